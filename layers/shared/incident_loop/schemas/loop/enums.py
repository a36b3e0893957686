"""The loop's vocabulary (seed 003): its stages, its failure states, policy modes and checkpoint types."""

from __future__ import annotations

from enum import Enum
from typing import Literal

LOOP_MECHANICS_VERSION = "1.0.0"
LOOP_MECHANICS_FROZEN_AT = "2026-11-23"

SuggestionType = Literal["template", "generated", "none"]
RecoveryStatus = Literal["pending", "approved", "applied", "rejected"]
PolicyCategory = Literal["safety", "privacy", "operational", "routing", "custom"]
PolicyAction = Literal["block", "warn", "escalate", "route_away", "rate_limit"]
ScopeType = Literal["tenant", "agent", "global"]
AdjustmentType = Literal["confidence_penalty", "route_block", "escalation_add", "weight_shift"]


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


# "Is this a failure?", answered once for the whole loop: the trace's stages_failed, a stage's outcome,
# LoopEvent.is_success and the console read it. Not failures: shadow mode is informational (the loop goes
# on), a recovery pending approval waits for a person, and a prevention is the loop doing its job.
NOT_FAILURES = frozenset({LoopFailureState.POLICY_SHADOW_MODE, LoopFailureState.RECOVERY_PENDING_APPROVAL,
                          LoopFailureState.PREVENTED})


def is_failure(state: LoopFailureState | None) -> bool:
    """Whether a stage (or a loop) that ended in `state` failed; no state is no failure."""
    return state is not None and state not in NOT_FAILURES


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


class NotificationEvent(str, Enum):
    """What the loop announces to a tenant's notification targets."""

    CHECKPOINT_CREATED = "checkpoint_created"
    POLICY_ACTIVATED = "policy_activated"
    POLICY_DEMOTED = "policy_demoted"  # an ACTIVE policy stopped acting: regrets, or its pattern merged
