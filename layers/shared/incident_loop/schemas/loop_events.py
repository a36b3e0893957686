"""M25 integration loop events (seed 003): the enums and models every bridge speaks.

Each model's `to_dict()` is plain JSON and `Model.model_validate(d)` rebuilds the model from it, so
a bridge stores dicts in event details and the next bridge reads a model back: never a dict-vs-object
guess (seed 000, issues 7 and 12). Free-form detail dicts are checked for JSON when they are set,
so a bad value fails where it is made, with its path, not later in the database.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LOOP_MECHANICS_VERSION = "1.0.0"
LOOP_MECHANICS_FROZEN_AT = "2026-11-23"

SuggestionType = Literal["template", "generated", "none"]
RecoveryStatus = Literal["pending", "approved", "applied", "rejected"]
PolicyCategory = Literal["safety", "privacy", "operational", "routing", "custom"]
PolicyAction = Literal["block", "warn", "escalate", "route_away", "rate_limit"]
ScopeType = Literal["tenant", "agent", "global"]
AdjustmentType = Literal["confidence_penalty", "route_block", "escalation_add", "weight_shift"]

DEFAULT_CHECKPOINT_OPTIONS = ("approve", "reject", "modify")
STRONG_MATCH_THRESHOLD = 0.85  # at or above: STRONG_MATCH, may be auto-applied
WEAK_MATCH_THRESHOLD = 0.6  # at or above: WEAK_MATCH; below: NOVEL


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:16]}"


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_json_serializable(obj: Any, path: str = "details") -> Any:
    """Return a JSON-safe copy of `obj`.

    Datetimes and dates become ISO strings, enums their value, pydantic models and objects with
    `to_dict()` their dict; dicts, lists and tuples are copied recursively. Anything else (a set,
    bytes, an arbitrary object, a non-string key, NaN or infinity) raises TypeError naming the
    path of the offending value, e.g. ``details.match.items[2]``.
    """
    if isinstance(obj, Enum):  # before str: a (str, Enum) member is a str but must become its value
        return ensure_json_serializable(obj.value, path)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):  # json.dumps writes NaN, but it is not JSON and jsonb refuses it
            raise TypeError(f"{path}: float {obj!r} is not valid JSON")
        return obj
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if callable(getattr(obj, "to_dict", None)):  # before BaseModel: LoopStatus.to_dict adds fields
        return ensure_json_serializable(obj.to_dict(), path)
    if isinstance(obj, BaseModel):
        return ensure_json_serializable(obj.model_dump(mode="json"), path)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} of type {type(key).__name__} is not a string")
            out[key] = ensure_json_serializable(value, f"{path}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [ensure_json_serializable(item, f"{path}[{i}]") for i, item in enumerate(obj)]
    raise TypeError(f"{path}: object of type {type(obj).__name__} is not JSON serializable")


class _Model(BaseModel):
    # Built on first use: every function imports this module, and each uses a few of its models at most.
    model_config = ConfigDict(validate_assignment=True, defer_build=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the model; `Model.model_validate(d)` rebuilds it."""
        return self.model_dump(mode="json")


def _json_field(*names: str) -> Any:
    """A before-validator that runs ensure_json_serializable over the named dict fields."""

    def check(cls: type, value: Any, info: Any) -> Any:
        return ensure_json_serializable({} if value is None else value, info.field_name)

    return field_validator(*names, mode="before")(classmethod(check))


class ConfidenceBand(str, Enum):
    """Confidence classification for pattern matching."""

    STRONG_MATCH = "strong_match"
    WEAK_MATCH = "weak_match"
    NOVEL = "novel"

    @classmethod
    def from_confidence(cls, confidence: float) -> ConfidenceBand:
        """STRONG_MATCH at >= 0.85, WEAK_MATCH at >= 0.6, else NOVEL; ValueError outside [0, 1]."""
        if not 0.0 <= confidence <= 1.0:  # also refuses NaN
            raise ValueError(f"confidence {confidence} is outside [0, 1]")
        if confidence >= STRONG_MATCH_THRESHOLD:
            return cls.STRONG_MATCH
        if confidence >= WEAK_MATCH_THRESHOLD:
            return cls.WEAK_MATCH
        return cls.NOVEL

    def allows_auto_apply(self) -> bool:
        """Only a strong match may be acted on without a person."""
        return self is ConfidenceBand.STRONG_MATCH

    def requires_human_review(self) -> bool:
        """Weak matches and novel patterns go to a person."""
        return self is not ConfidenceBand.STRONG_MATCH


class ConfidenceCalculator:
    """Centralized confidence calculation (seed 000, issue 10: confidence grows with occurrences)."""

    EXACT_MATCH_CONFIDENCE = 0.95
    BASE_RECOVERY_CONFIDENCE = 0.7
    AUTO_APPLY_CONFIDENCE = STRONG_MATCH_THRESHOLD
    AUTO_APPLY_MIN_OCCURRENCES = 3
    MAX_RECOVERY_CONFIDENCE = 0.9

    @classmethod
    def calculate_recovery_confidence(cls, occurrence_count: int, base: float = BASE_RECOVERY_CONFIDENCE) -> float:
        """1 occurrence: base; 2: base + 0.1; 3 or more: base + 0.2; never above 0.9."""
        if occurrence_count < 1:
            raise ValueError(f"occurrence_count must be at least 1, got {occurrence_count}")
        boost = 0.2 if occurrence_count >= 3 else 0.1 if occurrence_count == 2 else 0.0
        return round(min(cls.MAX_RECOVERY_CONFIDENCE, base + boost), 2)  # round: 0.7 + 0.1 is 0.7999...

    @classmethod
    def should_auto_apply(cls, confidence: float, occurrence_count: int) -> bool:
        """Auto-apply needs both a strong confidence and a pattern seen at least three times."""
        return confidence >= cls.AUTO_APPLY_CONFIDENCE and occurrence_count >= cls.AUTO_APPLY_MIN_OCCURRENCES

    @classmethod
    def get_confirmation_level(cls, confidence: float, occurrence_count: int) -> int:
        """Human confirmations needed: 0 when auto-applied, 1 at confidence >= 0.6, else 2."""
        if cls.should_auto_apply(confidence, occurrence_count):
            return 0
        return 1 if confidence >= WEAK_MATCH_THRESHOLD else 2


class LoopStage(str, Enum):
    """Stages in the integration feedback loop."""

    INCIDENT_CREATED = "incident_created"
    PATTERN_MATCHED = "pattern_matched"
    RECOVERY_SUGGESTED = "recovery_suggested"
    POLICY_GENERATED = "policy_generated"
    ROUTING_ADJUSTED = "routing_adjusted"
    LOOP_COMPLETE = "loop_complete"

    @classmethod
    def ordered(cls) -> list[LoopStage]:
        """The five stages of a loop, in order (LOOP_COMPLETE is where it ends, not a stage)."""
        return [member for member in cls if member is not cls.LOOP_COMPLETE]

    def next_stage(self) -> LoopStage | None:
        """The stage after this one; ROUTING_ADJUSTED leads to LOOP_COMPLETE, which leads nowhere."""
        members = list(LoopStage)
        index = members.index(self)
        return members[index + 1] if index + 1 < len(members) else None


class LoopFailureState(str, Enum):
    """Explicit states for when the loop doesn't complete (POLICY_SHADOW_MODE is informational)."""

    MATCH_FAILED = "match_failed"
    MATCH_LOW_CONFIDENCE = "match_low_confidence"
    NO_RECOVERY = "no_recovery"
    RECOVERY_REJECTED = "recovery_rejected"
    RECOVERY_PENDING_APPROVAL = "recovery_pending_approval"
    POLICY_REJECTED = "policy_rejected"
    POLICY_SHADOW_MODE = "policy_shadow_mode"
    ROUTING_REJECTED = "routing_rejected"
    ROUTING_ROLLED_BACK = "routing_rolled_back"
    PREVENTED = "prevented"
    STAGE_ERROR = "stage_error"


class PolicyMode(str, Enum):
    """Policy activation modes for safety."""

    SHADOW = "shadow"
    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"


class HumanCheckpointType(str, Enum):
    """Types of human intervention points."""

    APPROVE_RECOVERY = "approve_recovery"
    APPROVE_POLICY = "approve_policy"
    SIMULATE_ROUTING = "simulate_routing"
    REVERT_LOOP = "revert_loop"
    OVERRIDE_GUARDRAIL = "override_guardrail"


class LoopEvent(_Model):
    """Base event for integration loop: what one stage did for one incident."""

    event_id: str
    incident_id: str
    tenant_id: str
    stage: LoopStage
    timestamp: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    failure_state: LoopFailureState | None = None
    confidence_band: ConfidenceBand | None = None
    requires_human_review: bool = False

    _check_details = _json_field("details")

    @classmethod
    def create(
        cls,
        incident_id: str,
        tenant_id: str,
        stage: LoopStage,
        details: dict[str, Any] | None = None,
        failure_state: LoopFailureState | None = None,
        confidence_band: ConfidenceBand | None = None,
        requires_human_review: bool = False,
    ) -> LoopEvent:
        """A new event; details are made JSON-safe now (TypeError naming the path if they cannot be)."""
        return cls(
            event_id=_id("evt"),
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            timestamp=_now(),
            details=details or {},  # made JSON-safe by the field validator
            failure_state=failure_state,
            confidence_band=confidence_band,
            requires_human_review=requires_human_review,
        )

    @property
    def is_success(self) -> bool:
        """False only for a real failure: shadow mode never stops the loop (seed 000, issue 11)."""
        return self.failure_state in (None, LoopFailureState.POLICY_SHADOW_MODE)

    @property
    def is_blocked(self) -> bool:
        """True while the loop waits for a person."""
        return self.requires_human_review or self.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL


class PatternMatchResult(_Model):
    """Result of Bridge 1: Incident -> Failure Catalog."""

    incident_id: str
    pattern_id: str | None = None
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    is_new_pattern: bool = False
    matched: bool
    signature_hash: str
    match_details: dict[str, Any] = Field(default_factory=dict)

    _check_details = _json_field("match_details")

    @classmethod
    def from_match(
        cls,
        incident_id: str,
        pattern_id: str,
        confidence: float,
        signature_hash: str,
        is_new_pattern: bool = False,
        match_details: dict[str, Any] | None = None,
    ) -> PatternMatchResult:
        """A match to `pattern_id`, banded by its confidence."""
        return cls(
            incident_id=incident_id,
            pattern_id=pattern_id,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            is_new_pattern=is_new_pattern,
            matched=True,
            signature_hash=signature_hash,
            match_details=match_details or {},
        )

    @classmethod
    def no_match(cls, incident_id: str, signature_hash: str, reason: str) -> PatternMatchResult:
        """No pattern matched: confidence 0, NOVEL, with the reason in match_details."""
        return cls(
            incident_id=incident_id,
            pattern_id=None,
            confidence=0.0,
            confidence_band=ConfidenceBand.NOVEL,
            matched=False,
            signature_hash=signature_hash,
            match_details={"reason": reason},
        )

    def should_auto_proceed(self) -> bool:
        """True when the match is strong enough to go on without a person."""
        return self.matched and self.confidence_band.allows_auto_apply()


class RecoverySuggestion(_Model):
    """Result of Bridge 2: Pattern -> Recovery. Status: pending -> approved -> applied, or rejected."""

    recovery_id: str
    incident_id: str
    pattern_id: str
    suggestion_type: SuggestionType
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    action_type: str
    action_params: dict[str, Any] = Field(default_factory=dict)
    status: RecoveryStatus = "pending"
    auto_applicable: bool = False
    requires_confirmation: int = Field(default=1, ge=0)
    confirmations_received: int = Field(default=0, ge=0)
    rejection_reason: str | None = None

    _check_params = _json_field("action_params")

    @classmethod
    def create(
        cls,
        incident_id: str,
        pattern_id: str,
        suggestion_type: SuggestionType,
        confidence: float,
        action_type: str,
        action_params: dict[str, Any],
        occurrence_count: int,
    ) -> RecoverySuggestion:
        """A suggestion; approved at once when ConfidenceCalculator says it may be auto-applied."""
        auto = ConfidenceCalculator.should_auto_apply(confidence, occurrence_count)
        return cls(
            recovery_id=_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type=suggestion_type,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            action_type=action_type,
            action_params=action_params,
            status="approved" if auto else "pending",
            auto_applicable=auto,
            requires_confirmation=ConfidenceCalculator.get_confirmation_level(confidence, occurrence_count),
        )

    @classmethod
    def none_available(cls, incident_id: str, pattern_id: str, reason: str) -> RecoverySuggestion:
        """No recovery could be suggested: a rejected "none" suggestion carrying the reason."""
        return cls(
            recovery_id=_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type="none",
            confidence=0.0,
            confidence_band=ConfidenceBand.NOVEL,
            action_type="none",
            status="rejected",
            requires_confirmation=0,
            rejection_reason=reason,
        )

    def add_confirmation(self) -> None:
        """Count a person's confirmation; enough of them approve a pending recovery."""
        self.confirmations_received += 1
        if self.status == "pending" and self.confirmations_received >= self.requires_confirmation:
            self.status = "approved"

    def reject(self, reason: str) -> None:
        """Reject the recovery with a reason."""
        self.status = "rejected"
        self.rejection_reason = reason

    def mark_applied(self) -> None:
        """Record that the recovery ran; only an approved (or already applied) recovery may."""
        if self.status not in ("approved", "applied"):
            raise ValueError(f"recovery {self.recovery_id} is {self.status}, not approved")
        self.status = "applied"


class PolicyRule(_Model):
    """Result of Bridge 3: Recovery -> Policy. Born in SHADOW; confirmations activate, regrets demote."""

    policy_id: str
    name: str
    description: str
    category: PolicyCategory
    condition: str
    action: PolicyAction
    scope_type: ScopeType = "tenant"
    scope_id: str | None = None
    source_pattern_id: str
    source_recovery_id: str
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    mode: PolicyMode = PolicyMode.SHADOW
    confirmations_required: int = Field(default=1, ge=0)
    confirmations_received: int = Field(default=0, ge=0)
    regret_count: int = Field(default=0, ge=0)
    shadow_evaluations: int = Field(default=0, ge=0)
    shadow_would_block: int = Field(default=0, ge=0)
    created_at: datetime
    activated_at: datetime | None = None

    @classmethod
    def create(
        cls,
        name: str,
        description: str,
        category: PolicyCategory,
        condition: str,
        action: PolicyAction,
        source_pattern_id: str,
        source_recovery_id: str,
        confidence: float,
        scope_type: ScopeType = "tenant",
        scope_id: str | None = None,
        confirmations_required: int = 1,
    ) -> PolicyRule:
        """A new policy, always in SHADOW mode whatever its confidence."""
        return cls(
            policy_id=_id("pol"),
            name=name,
            description=description,
            category=category,
            condition=condition,
            action=action,
            scope_type=scope_type,
            scope_id=scope_id,
            source_pattern_id=source_pattern_id,
            source_recovery_id=source_recovery_id,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            mode=PolicyMode.SHADOW,
            confirmations_required=confirmations_required,
            created_at=_now(),
        )

    def record_shadow_evaluation(self, would_block: bool) -> None:
        """Count one evaluation in shadow mode, and whether the policy would have blocked."""
        self.shadow_evaluations += 1
        if would_block:
            self.shadow_would_block += 1

    def add_confirmation(self) -> None:
        """Count a confirmation; reaching confirmations_required moves SHADOW or PENDING to ACTIVE."""
        self.confirmations_received += 1
        if self.confirmations_received >= self.confirmations_required and self.mode in (
            PolicyMode.SHADOW,
            PolicyMode.PENDING,
        ):
            self.mode = PolicyMode.ACTIVE
            self.activated_at = _now()

    def record_regret(self, threshold: int = 3) -> bool:
        """Count a regret; at `threshold` an ACTIVE policy returns to SHADOW. True if it was demoted."""
        self.regret_count += 1
        if self.regret_count >= threshold and self.mode == PolicyMode.ACTIVE:
            self.mode = PolicyMode.SHADOW
            self.activated_at = None
            self.confirmations_received = 0  # it must earn its confirmations again
            return True
        return False

    def shadow_block_rate(self) -> float:
        """Share of shadow evaluations that would have blocked; 0.0 before any."""
        return self.shadow_would_block / self.shadow_evaluations if self.shadow_evaluations else 0.0


class RoutingAdjustment(_Model):
    """Result of Bridge 4: Policy -> Routing. Bounded by max_delta, decays, rolls back on KPI regression."""

    adjustment_id: str
    agent_id: str
    capability: str | None = None
    adjustment_type: AdjustmentType
    magnitude: float
    reason: str
    source_policy_id: str
    max_delta: float = Field(default=0.2, gt=0, le=1)
    decay_days: int = Field(default=7, ge=1)
    rollback_threshold: float = Field(default=0.1, gt=0, le=1)
    created_at: datetime
    expires_at: datetime | None = None
    is_active: bool = True
    was_rolled_back: bool = False
    rollback_reason: str | None = None
    kpi_baseline: float | None = None
    kpi_current: float | None = None

    @model_validator(mode="after")
    def _magnitude_within_max_delta(self) -> RoutingAdjustment:
        if abs(self.magnitude) > self.max_delta:
            raise ValueError(f"magnitude {self.magnitude} exceeds max_delta {self.max_delta}")
        return self

    @classmethod
    def create(
        cls,
        agent_id: str,
        adjustment_type: AdjustmentType,
        magnitude: float,
        reason: str,
        source_policy_id: str,
        capability: str | None = None,
        max_delta: float = 0.2,
        decay_days: int = 7,
        rollback_threshold: float = 0.1,
        kpi_baseline: float | None = None,
    ) -> RoutingAdjustment:
        """A new adjustment; magnitude is clamped into [-max_delta, max_delta], expiry at decay_days."""
        created = _now()
        return cls(
            adjustment_id=_id("adj"),
            agent_id=agent_id,
            capability=capability,
            adjustment_type=adjustment_type,
            magnitude=max(-max_delta, min(max_delta, magnitude)),
            reason=reason,
            source_policy_id=source_policy_id,
            max_delta=max_delta,
            decay_days=decay_days,
            rollback_threshold=rollback_threshold,
            created_at=created,
            expires_at=created + timedelta(days=decay_days),
            kpi_baseline=kpi_baseline,
        )

    def effective_magnitude(self, now: datetime | None = None) -> float:
        """The magnitude decayed linearly to zero at decay_days; 0.0 once inactive or rolled back."""
        if not self.is_active or self.was_rolled_back:
            return 0.0
        now = now or _now()
        if now.tzinfo is None:  # a naive time is taken as UTC rather than failing to subtract
            now = now.replace(tzinfo=UTC)
        elapsed_days = max(0.0, (now - self.created_at).total_seconds() / 86400)
        return self.magnitude * max(0.0, 1.0 - elapsed_days / self.decay_days)

    def check_kpi_regression(self, current_kpi: float) -> bool:
        """Record the KPI; True when it fell more than rollback_threshold (relative) below a positive baseline."""
        self.kpi_current = current_kpi
        if self.kpi_baseline is None or self.kpi_baseline <= 0:
            return False
        return (self.kpi_baseline - current_kpi) / self.kpi_baseline > self.rollback_threshold

    def rollback(self, reason: str) -> None:
        """Switch the adjustment off for good, with the reason."""
        self.is_active = False
        self.was_rolled_back = True
        self.rollback_reason = reason


class HumanCheckpoint(_Model):
    """Human intervention point in the loop; resolved once, with one of its options."""

    checkpoint_id: str
    checkpoint_type: HumanCheckpointType
    incident_id: str
    tenant_id: str
    stage: LoopStage
    target_id: str
    description: str
    options: list[str] = Field(default_factory=lambda: list(DEFAULT_CHECKPOINT_OPTIONS), min_length=1)
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None

    @classmethod
    def create(
        cls,
        checkpoint_type: HumanCheckpointType,
        incident_id: str,
        tenant_id: str,
        stage: LoopStage,
        target_id: str,
        description: str,
        options: list[str] | None = None,
    ) -> HumanCheckpoint:
        """A pending checkpoint; options default to approve / reject / modify."""
        return cls(
            checkpoint_id=_id("chk"),
            checkpoint_type=checkpoint_type,
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            target_id=target_id,
            description=description,
            options=list(DEFAULT_CHECKPOINT_OPTIONS) if options is None else options,
            created_at=_now(),
        )

    def resolve(self, resolution: str, resolved_by: str) -> None:
        """Resolve with one of the options; ValueError if already resolved or not an option."""
        if not self.is_pending():
            raise ValueError(f"checkpoint {self.checkpoint_id} is already resolved ({self.resolution})")
        if resolution not in self.options:
            raise ValueError(f"resolution {resolution!r} is not one of {self.options}")
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = _now()

    def is_pending(self) -> bool:
        """True until the checkpoint is resolved."""
        return self.resolved_at is None


_MATCH_LABELS = {"exact": "exact hash", "fuzzy": "fuzzy match", "new": "new pattern"}


class LoopStatus(_Model):
    """Complete status of an integration loop instance, with its console tree and narrative."""

    loop_id: str
    incident_id: str
    tenant_id: str
    current_stage: LoopStage
    stages_completed: list[str] = Field(default_factory=list)
    stages_failed: list[str] = Field(default_factory=list)
    total_stages: int = Field(default=len(LoopStage.ordered()), ge=1)
    started_at: datetime
    completed_at: datetime | None = None
    is_complete: bool = False
    is_blocked: bool = False
    failure_state: LoopFailureState | None = None
    pending_checkpoints: list[str] = Field(default_factory=list)
    pattern_match_result: PatternMatchResult | None = None
    recovery_suggestion: RecoverySuggestion | None = None
    policy_rule: PolicyRule | None = None
    routing_adjustment: RoutingAdjustment | None = None

    def completion_pct(self) -> float:
        """Percentage of stages completed, one decimal, never above 100."""
        return min(100.0, round(100 * len(self.stages_completed) / self.total_stages, 1))

    @property
    def narrative(self) -> str:
        """What happened, in plain English (the same text as _generate_narrative())."""
        return self._generate_narrative()

    def _waiting(self) -> bool:
        return self.is_blocked or self.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL

    def _failed(self) -> bool:
        return self.failure_state not in (None, LoopFailureState.POLICY_SHADOW_MODE, LoopFailureState.PREVENTED)

    def _headline(self) -> str:
        if self.failure_state == LoopFailureState.PREVENTED:
            return "PREVENTED"
        if self.is_complete:
            return "COMPLETE"
        if self._waiting():
            return "BLOCKED"
        if self._failed():
            assert self.failure_state is not None
            return f"FAILED ({self.failure_state.value})"
        return "IN PROGRESS"

    def _match_kind(self, m: PatternMatchResult) -> str:
        if not m.matched:
            return "no match"
        return str(m.match_details.get("match_type") or ("new" if m.is_new_pattern else "match"))

    def _stage_note(self, stage: LoopStage) -> str:
        m, r, p, a = self.pattern_match_result, self.recovery_suggestion, self.policy_rule, self.routing_adjustment
        if stage == LoopStage.PATTERN_MATCHED and m:
            kind = self._match_kind(m)
            prevented = m.match_details.get("prevented_by")
            tail = f", prevented by {prevented}" if prevented else ""
            return f" ({_MATCH_LABELS.get(kind, kind)}, {m.confidence:g} confidence{tail})"
        if stage == LoopStage.RECOVERY_SUGGESTED and r:
            if r.auto_applicable:
                how = "auto-apply"
            else:
                how = {"pending": "needs approval", "approved": "approved", "applied": "approved, applied"}.get(
                    r.status, "rejected"
                )
            return f" ({how}, {r.confidence:g} confidence)"
        if stage == LoopStage.POLICY_GENERATED and p:
            return f" ({p.mode.value} mode)"
        if stage == LoopStage.ROUTING_ADJUSTED and a:
            rolled = ", rolled back" if a.was_rolled_back else ""
            return f" ({a.adjustment_type} {a.magnitude:+g}{rolled})"
        return ""

    def _stage_mark(self, stage: LoopStage) -> str:
        if stage.value in self.stages_failed:
            return "❌"
        if stage.value in self.stages_completed:
            return "✅"
        if stage == self.current_stage and self._waiting():
            return f"⏸ waiting on {', '.join(self.pending_checkpoints) or 'a person'}"
        return "⬜"

    def to_console_display(self) -> str:
        """The loop as a console tree: one line per stage (✅ done, ❌ failed, ⏸ waiting, ⬜ not reached)."""
        lines = [
            f"Incident: {self.incident_id}",
            f"Loop Status: {self._headline()} (is_complete: {str(self.is_complete).lower()})",
            "",
            "Stages Completed:",
        ]
        stages = LoopStage.ordered()
        for i, stage in enumerate(stages):
            branch = "└──" if i == len(stages) - 1 else "├──"
            lines.append(f"{branch} {stage.value} {self._stage_mark(stage)}{self._stage_note(stage)}")
        lines += ["", f"Narrative: {self._generate_narrative()}"]
        return "\n".join(lines)

    def _generate_narrative(self) -> str:
        """A sentence per thing that happened, from the nested stage results."""
        m, r, p, a = self.pattern_match_result, self.recovery_suggestion, self.policy_rule, self.routing_adjustment
        parts: list[str] = []
        if m is None:
            parts.append(f"Incident {self.incident_id} was recorded.")
        elif not m.matched:
            parts.append(f"Incident {self.incident_id} matched no known pattern.")
        elif m.is_new_pattern or m.match_details.get("match_type") == "new":
            parts.append(f"Incident {self.incident_id} started new pattern {m.pattern_id} ({m.confidence:g}).")
        else:
            kind = self._match_kind(m)
            parts.append(f"Incident {self.incident_id} matched pattern {m.pattern_id} ({kind}, {m.confidence:g}).")
        if self.failure_state == LoopFailureState.PREVENTED:
            by = m.match_details.get("prevented_by") if m else None
            parts.append(f"It was prevented by active policy {by}." if by else "It was prevented by an active policy.")
        if r and r.suggestion_type == "none":
            parts.append(f"No recovery was available: {r.rejection_reason}.")
        elif r and r.status == "rejected":
            parts.append(f"Recovery {r.recovery_id} was rejected: {r.rejection_reason}.")
        elif r and r.auto_applicable:
            parts.append(f"Recovery {r.recovery_id} was auto-applied at {r.confidence:g}.")
        elif r and r.status == "pending":
            parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} is waiting for human approval.")
        elif r:
            parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} was approved by a person.")
        if p:
            parts.append(f"Policy {p.policy_id} is in {p.mode.value} mode.")
        if a and a.was_rolled_back:
            parts.append(f"Routing for agent {a.agent_id} was adjusted, then rolled back: {a.rollback_reason}.")
        elif a:
            parts.append(f"Routing for agent {a.agent_id} was adjusted by {a.magnitude:g}.")
        if self._waiting() and self.pending_checkpoints:
            parts.append(f"The loop is waiting on {', '.join(self.pending_checkpoints)}.")
        elif self._failed():
            assert self.failure_state is not None
            parts.append(f"The loop stopped at {self.current_stage.value}: {self.failure_state.value}.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with nested results as dicts, plus completion_pct and narrative."""
        return {**self.model_dump(mode="json"), "completion_pct": self.completion_pct(), "narrative": self.narrative}
