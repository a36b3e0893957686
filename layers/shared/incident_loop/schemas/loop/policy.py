"""What Bridges 3 and 4 produce: a policy that guards against a failure, and the routing adjustment it makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, model_validator

from incident_loop.schemas.loop.base import LoopModel, new_id, utc_now
from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import AdjustmentType, PolicyAction, PolicyCategory, PolicyMode, ScopeType


class PolicyRule(LoopModel):
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
            policy_id=new_id("pol"),
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
            created_at=utc_now(),
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
            self.activated_at = utc_now()
            # Regrets count against this activation only: those of a shadow period (which blocked nothing)
            # or of the activation that was demoted made one regret demote the policy at once.
            self.regret_count = 0

    def record_regret(self, threshold: int = 3) -> bool:
        """Count a regret; at `threshold` regrets since its activation an ACTIVE policy returns to SHADOW.
        True if it was demoted."""
        self.regret_count += 1
        if self.regret_count >= threshold and self.mode == PolicyMode.ACTIVE:
            self._demote()
            return True
        return False

    def widen(self) -> bool:
        """Its pattern absorbed siblings (Bridge 1's merge): it would now block their incidents too, which nobody
        confirmed it on. An ACTIVE policy returns to SHADOW, as a regret demotes it, and one not active yet loses
        the confirmations given for the narrower group; True if that changed it."""
        if self.mode == PolicyMode.ACTIVE:
            self._demote()
            return True
        if self.mode in (PolicyMode.SHADOW, PolicyMode.PENDING) and self.confirmations_received:
            self.confirmations_received = 0
            return True
        return False

    def retire(self) -> bool:
        """Its pattern was absorbed into a sibling (Bridge 1's merge): no incident meets it any more (they meet the
        sibling's), so it is DISABLED rather than shown as guarding anything; True if that changed its mode."""
        if self.mode == PolicyMode.DISABLED:
            return False
        self.mode = PolicyMode.DISABLED
        self.activated_at = None
        return True

    def _demote(self) -> None:
        self.mode = PolicyMode.SHADOW
        self.activated_at = None
        self.confirmations_received = 0  # it must earn its confirmations again

    def shadow_block_rate(self) -> float:
        """Share of shadow evaluations that would have blocked; 0.0 before any."""
        return self.shadow_would_block / self.shadow_evaluations if self.shadow_evaluations else 0.0


class RoutingAdjustment(LoopModel):
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
        created = utc_now()
        return cls(
            adjustment_id=new_id("adj"),
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
        now = now or utc_now()
        if now.tzinfo is None:  # a naive time is taken as UTC rather than failing to subtract
            now = now.replace(tzinfo=UTC)
        elapsed_days = max(0.0, (now - self.created_at).total_seconds() / 86400)
        return self.magnitude * max(0.0, 1.0 - elapsed_days / self.decay_days)

    def check_kpi_regression(self, current_kpi: float) -> bool:
        """Record the KPI; True when it fell more than rollback_threshold (relative) below a positive baseline.

        An adjustment made before its agent reported any KPI takes the first one reported after it as its
        baseline (without one it could never be rolled back, however far the KPI fell)."""
        self.kpi_current = current_kpi
        if self.kpi_baseline is None:
            self.kpi_baseline = current_kpi
            return False
        if self.kpi_baseline <= 0:
            return False
        return (self.kpi_baseline - current_kpi) / self.kpi_baseline > self.rollback_threshold

    def rollback(self, reason: str) -> None:
        """Switch the adjustment off for good, with the reason."""
        self.is_active = False
        self.was_rolled_back = True
        self.rollback_reason = reason
