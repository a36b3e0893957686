"""M25 integration loop events (seed 003): the enums and models every bridge speaks.

Everything a model puts into event details goes through `to_dict()` and round-trips through
JSON and `model_validate`, so a bridge never meets a dict where it expected an object.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

LOOP_MECHANICS_VERSION = "1.0.0"
LOOP_MECHANICS_FROZEN_AT = "2026-11-23"


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:16]}"


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_json_serializable(obj: Any, path: str = "details") -> Any:
    """A JSON-safe copy of `obj`; raises TypeError naming the path of the first value that is not."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, BaseModel):
        return ensure_json_serializable(obj.model_dump(mode="json"), path)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return ensure_json_serializable(obj.to_dict(), path)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} of type {type(key).__name__} is not a string")
            out[key] = ensure_json_serializable(value, f"{path}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [ensure_json_serializable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{path}: object of type {type(obj).__name__} is not JSON serializable")


class _Model(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; `Model.model_validate(d)` rebuilds the model."""
        return self.model_dump(mode="json")


class ConfidenceBand(str, Enum):
    """Confidence classification for pattern matching."""

    STRONG_MATCH = "strong_match"
    WEAK_MATCH = "weak_match"
    NOVEL = "novel"

    @classmethod
    def from_confidence(cls, confidence: float) -> ConfidenceBand:
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence {confidence} is outside [0, 1]")
        if confidence >= 0.85:
            return cls.STRONG_MATCH
        if confidence >= 0.6:
            return cls.WEAK_MATCH
        return cls.NOVEL

    def allows_auto_apply(self) -> bool:
        return self is ConfidenceBand.STRONG_MATCH

    def requires_human_review(self) -> bool:
        return self is not ConfidenceBand.STRONG_MATCH


class ConfidenceCalculator:
    """Centralized confidence calculation (seed 000, issue 10)."""

    EXACT_MATCH_CONFIDENCE = 0.95
    BASE_RECOVERY_CONFIDENCE = 0.7
    AUTO_APPLY_CONFIDENCE = 0.85
    AUTO_APPLY_MIN_OCCURRENCES = 3

    @staticmethod
    def calculate_recovery_confidence(occurrence_count: int, base: float = 0.7) -> float:
        """1 occurrence: base; 2: base + 0.1; 3 or more: base + 0.2, capped at 0.9."""
        if occurrence_count < 1:
            raise ValueError("occurrence_count must be at least 1")
        boost = 0.2 if occurrence_count >= 3 else 0.1 if occurrence_count == 2 else 0.0
        return round(min(0.9, base + boost), 2)

    @classmethod
    def should_auto_apply(cls, confidence: float, occurrence_count: int) -> bool:
        return confidence >= cls.AUTO_APPLY_CONFIDENCE and occurrence_count >= cls.AUTO_APPLY_MIN_OCCURRENCES

    @classmethod
    def get_confirmation_level(cls, confidence: float, occurrence_count: int) -> int:
        """Human confirmations needed: 0 when auto-applied, 1 for weak confidence, 2 below that."""
        if cls.should_auto_apply(confidence, occurrence_count):
            return 0
        return 1 if confidence >= 0.6 else 2


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
        """The five stages of a loop, in order."""
        return [cls.INCIDENT_CREATED, cls.PATTERN_MATCHED, cls.RECOVERY_SUGGESTED, cls.POLICY_GENERATED,
                cls.ROUTING_ADJUSTED]

    def next_stage(self) -> LoopStage | None:
        order = [*self.ordered(), LoopStage.LOOP_COMPLETE]
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class LoopFailureState(str, Enum):
    """Explicit states for when the loop doesn't complete."""

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
    """Base event for integration loop."""

    event_id: str
    incident_id: str
    tenant_id: str
    stage: LoopStage
    timestamp: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    failure_state: LoopFailureState | None = None
    confidence_band: ConfidenceBand | None = None
    requires_human_review: bool = False

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
        """A new event; details are checked for JSON now, not when they are stored."""
        return cls(
            event_id=_id("evt"),
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            timestamp=_now(),
            details=ensure_json_serializable(details or {}),
            failure_state=failure_state,
            confidence_band=confidence_band,
            requires_human_review=requires_human_review,
        )

    @property
    def is_success(self) -> bool:
        # Shadow mode is information, not failure (seed 000, issue 11).
        return self.failure_state in (None, LoopFailureState.POLICY_SHADOW_MODE)

    @property
    def is_blocked(self) -> bool:
        return self.requires_human_review or self.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL


class PatternMatchResult(_Model):
    """Result of Bridge 1: Incident -> Failure Catalog."""

    incident_id: str
    pattern_id: str | None
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    is_new_pattern: bool = False
    matched: bool
    signature_hash: str
    match_details: dict[str, Any] = Field(default_factory=dict)

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
        return cls(
            incident_id=incident_id,
            pattern_id=pattern_id,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            is_new_pattern=is_new_pattern,
            matched=True,
            signature_hash=signature_hash,
            match_details=ensure_json_serializable(match_details or {}, "match_details"),
        )

    @classmethod
    def no_match(cls, incident_id: str, signature_hash: str, reason: str) -> PatternMatchResult:
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
        return self.matched and self.confidence_band.allows_auto_apply()


class RecoverySuggestion(_Model):
    """Result of Bridge 2: Pattern -> Recovery."""

    recovery_id: str
    incident_id: str
    pattern_id: str
    suggestion_type: Literal["template", "generated", "none"]
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    action_type: str
    action_params: dict[str, Any] = Field(default_factory=dict)
    status: Literal["pending", "approved", "applied", "rejected"]
    auto_applicable: bool
    requires_confirmation: int = Field(ge=0)
    confirmations_received: int = Field(default=0, ge=0)
    rejection_reason: str | None = None

    @classmethod
    def create(
        cls,
        incident_id: str,
        pattern_id: str,
        suggestion_type: Literal["template", "generated", "none"],
        confidence: float,
        action_type: str,
        action_params: dict[str, Any],
        occurrence_count: int,
    ) -> RecoverySuggestion:
        auto = ConfidenceCalculator.should_auto_apply(confidence, occurrence_count)
        return cls(
            recovery_id=_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type=suggestion_type,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            action_type=action_type,
            action_params=ensure_json_serializable(action_params, "action_params"),
            status="approved" if auto else "pending",
            auto_applicable=auto,
            requires_confirmation=ConfidenceCalculator.get_confirmation_level(confidence, occurrence_count),
        )

    @classmethod
    def none_available(cls, incident_id: str, pattern_id: str, reason: str) -> RecoverySuggestion:
        return cls(
            recovery_id=_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type="none",
            confidence=0.0,
            confidence_band=ConfidenceBand.NOVEL,
            action_type="none",
            status="rejected",
            auto_applicable=False,
            requires_confirmation=0,
            rejection_reason=reason,
        )

    def add_confirmation(self) -> None:
        """One more human confirmation; enough of them approve the recovery."""
        self.confirmations_received += 1
        if self.status == "pending" and self.confirmations_received >= self.requires_confirmation:
            self.status = "approved"

    def reject(self, reason: str) -> None:
        self.status = "rejected"
        self.rejection_reason = reason

    def mark_applied(self) -> None:
        self.status = "applied"


class PolicyRule(_Model):
    """Result of Bridge 3: Recovery -> Policy."""

    policy_id: str
    name: str
    description: str
    category: Literal["safety", "privacy", "operational", "routing", "custom"]
    condition: str
    action: Literal["block", "warn", "escalate", "route_away", "rate_limit"]
    scope_type: Literal["tenant", "agent", "global"] = "tenant"
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
        category: Literal["safety", "privacy", "operational", "routing", "custom"],
        condition: str,
        action: Literal["block", "warn", "escalate", "route_away", "rate_limit"],
        source_pattern_id: str,
        source_recovery_id: str,
        confidence: float,
        scope_type: Literal["tenant", "agent", "global"] = "tenant",
        scope_id: str | None = None,
        confirmations_required: int = 1,
    ) -> PolicyRule:
        """A new policy, always in SHADOW mode."""
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
        self.shadow_evaluations += 1
        if would_block:
            self.shadow_would_block += 1

    def add_confirmation(self) -> None:
        """One more confirmation; enough of them move SHADOW or PENDING to ACTIVE."""
        self.confirmations_received += 1
        if (
            self.confirmations_received >= self.confirmations_required
            and self.mode in (PolicyMode.SHADOW, PolicyMode.PENDING)
        ):
            self.mode = PolicyMode.ACTIVE
            self.activated_at = _now()

    def record_regret(self, threshold: int = 3) -> bool:
        """One more regret; at the threshold an ACTIVE policy goes back to SHADOW. True if demoted."""
        self.regret_count += 1
        if self.regret_count >= threshold and self.mode == PolicyMode.ACTIVE:
            self.mode = PolicyMode.SHADOW
            self.activated_at = None
            self.confirmations_received = 0
            return True
        return False

    def shadow_block_rate(self) -> float:
        return self.shadow_would_block / self.shadow_evaluations if self.shadow_evaluations else 0.0


class RoutingAdjustment(_Model):
    """Result of Bridge 4: Policy -> Routing."""

    adjustment_id: str
    agent_id: str
    capability: str | None = None
    adjustment_type: Literal["confidence_penalty", "route_block", "escalation_add", "weight_shift"]
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

    @classmethod
    def create(
        cls,
        agent_id: str,
        adjustment_type: Literal["confidence_penalty", "route_block", "escalation_add", "weight_shift"],
        magnitude: float,
        reason: str,
        source_policy_id: str,
        capability: str | None = None,
        max_delta: float = 0.2,
        decay_days: int = 7,
        rollback_threshold: float = 0.1,
        kpi_baseline: float | None = None,
    ) -> RoutingAdjustment:
        """A new adjustment; its magnitude is clamped into [-max_delta, max_delta]."""
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
        """The magnitude decayed linearly to zero over decay_days; zero once inactive."""
        if not self.is_active or self.was_rolled_back:
            return 0.0
        elapsed_days = ((now or _now()) - self.created_at).total_seconds() / 86400
        return self.magnitude * max(0.0, 1.0 - max(0.0, elapsed_days) / self.decay_days)

    def check_kpi_regression(self, current_kpi: float) -> bool:
        """Record the KPI; True when it fell more than rollback_threshold (relative) below the baseline."""
        self.kpi_current = current_kpi
        if not self.kpi_baseline:
            return False
        return (self.kpi_baseline - current_kpi) / self.kpi_baseline > self.rollback_threshold

    def rollback(self, reason: str) -> None:
        self.is_active = False
        self.was_rolled_back = True
        self.rollback_reason = reason


class HumanCheckpoint(_Model):
    """Human intervention point in the loop."""

    checkpoint_id: str
    checkpoint_type: HumanCheckpointType
    incident_id: str
    tenant_id: str
    stage: LoopStage
    target_id: str
    description: str
    options: list[str] = Field(default_factory=lambda: ["approve", "reject", "modify"])
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
        return cls(
            checkpoint_id=_id("chk"),
            checkpoint_type=checkpoint_type,
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            target_id=target_id,
            description=description,
            options=options or ["approve", "reject", "modify"],
            created_at=_now(),
        )

    def resolve(self, resolution: str, resolved_by: str) -> None:
        if not self.is_pending():
            raise ValueError(f"checkpoint {self.checkpoint_id} is already resolved")
        if resolution not in self.options:
            raise ValueError(f"resolution {resolution!r} is not one of {self.options}")
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = _now()

    def is_pending(self) -> bool:
        return self.resolved_at is None


class LoopStatus(_Model):
    """Complete status of an integration loop instance."""

    loop_id: str
    incident_id: str
    tenant_id: str
    current_stage: LoopStage
    stages_completed: list[str] = Field(default_factory=list)
    stages_failed: list[str] = Field(default_factory=list)
    total_stages: int = 5
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
        return min(100.0, round(100 * len(self.stages_completed) / self.total_stages, 1))

    @property
    def narrative(self) -> str:
        return self._generate_narrative()

    def _headline(self) -> str:
        if self.failure_state == LoopFailureState.PREVENTED:
            return "PREVENTED"
        if self.is_complete:
            return "COMPLETE"
        if self.is_blocked:
            return "BLOCKED"
        if self.failure_state is not None:
            return f"FAILED ({self.failure_state.value})"
        return "IN PROGRESS"

    def _stage_note(self, stage: LoopStage) -> str:
        m, r, p, a = self.pattern_match_result, self.recovery_suggestion, self.policy_rule, self.routing_adjustment
        if stage == LoopStage.PATTERN_MATCHED and m:
            kind = m.match_details.get("match_type", "new" if m.is_new_pattern else "match")
            label = {"exact": "exact hash", "fuzzy": "fuzzy", "new": "new pattern"}.get(kind, kind)
            return f" ({label}, {m.confidence:g} confidence)"
        if stage == LoopStage.RECOVERY_SUGGESTED and r:
            how = "auto-apply" if r.auto_applicable else f"{r.status}"
            return f" ({how}, {r.confidence:g} confidence)"
        if stage == LoopStage.POLICY_GENERATED and p:
            return f" ({p.mode.value} mode)"
        if stage == LoopStage.ROUTING_ADJUSTED and a:
            return f" ({a.adjustment_type} {a.magnitude:+g})"
        return ""

    def to_console_display(self) -> str:
        """The loop as a tree, one line per stage."""
        lines = [
            f"Incident: {self.incident_id}",
            f"Loop Status: {self._headline()} (is_complete: {str(self.is_complete).lower()},"
            f" {self.completion_pct():g}%)",
            "",
            "Stages:",
        ]
        stages = LoopStage.ordered()
        for i, stage in enumerate(stages):
            branch = "└──" if i == len(stages) - 1 else "├──"
            if stage.value in self.stages_failed:
                mark = "❌"
            elif stage.value in self.stages_completed:
                mark = "✅"
            elif stage == self.current_stage and self.is_blocked:
                mark = f"⏸ waiting on {', '.join(self.pending_checkpoints) or 'a person'}"
            else:
                mark = "⬜"
            lines.append(f"{branch} {stage.value} {mark}{self._stage_note(stage)}")
        lines += ["", f"Narrative: {self.narrative}"]
        return "\n".join(lines)

    def _generate_narrative(self) -> str:
        parts = []
        m, r, p, a = self.pattern_match_result, self.recovery_suggestion, self.policy_rule, self.routing_adjustment
        if m and m.pattern_id:
            kind = m.match_details.get("match_type", "match")
            parts.append(f"Incident {self.incident_id} matched pattern {m.pattern_id} ({kind}, {m.confidence:g}).")
        else:
            parts.append(f"Incident {self.incident_id} was recorded.")
        if self.failure_state == LoopFailureState.PREVENTED:
            parts.append(f"An active policy prevented it ({m.match_details.get('prevented_by') if m else '?'}).")
        if r:
            if r.status == "rejected":
                parts.append(f"Recovery {r.recovery_id} was rejected: {r.rejection_reason}.")
            elif r.auto_applicable:
                parts.append(f"Recovery {r.recovery_id} was auto-applied at {r.confidence:g}.")
            elif r.status == "pending":
                parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} waits for a person's approval.")
            else:
                parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} was approved.")
        if p:
            parts.append(f"Policy {p.policy_id} is in {p.mode.value} mode.")
        if a:
            parts.append(f"Routing for agent {a.agent_id} was adjusted by {a.magnitude:+g} ({a.adjustment_type}).")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "completion_pct": self.completion_pct(),
                "narrative": self.narrative}
