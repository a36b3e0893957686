"""Bridge 2: Pattern -> Recovery. Confidence grows with occurrences; low confidence waits for a person."""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from incident_loop.loop.errors import NotReady
from incident_loop.loop.recovery_templates import plan_for
from incident_loop.loop.stage import StageOutcome, hand_off
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import (
    ConfidenceCalculator,
    HumanCheckpoint,
    HumanCheckpointType,
    LoopEvent,
    LoopFailureState,
    LoopStage,
    RecoverySuggestion,
)
from incident_loop.stores.checkpoints import insert_checkpoint
from incident_loop.stores.incidents import get_incident
from incident_loop.stores.loop_store import record_stage
from incident_loop.stores.patterns import get_pattern
from incident_loop.stores.recoveries import insert_recovery, save_recovery

STAGE = LoopStage.RECOVERY_SUGGESTED


def suggest_recovery(conn: Connection[Any], env: Envelope) -> StageOutcome:
    """Answer the incident's pattern with a recovery; auto-apply it or open an approval checkpoint."""
    incident = get_incident(conn, env.tenant_id, env.incident_id)
    pattern = get_pattern(conn, env.tenant_id, env.payload.get("pattern_id", ""))
    if incident is None or pattern is None:
        raise NotReady(f"incident {env.incident_id} or its pattern is not stored yet")
    occurrences = int(env.payload["occurrence_count"])
    suggestion_type, plan = plan_for(pattern["category"], incident["error_type"], incident["skill_id"])
    confidence = ConfidenceCalculator.calculate_recovery_confidence(occurrences)
    recovery = insert_recovery(
        conn,
        env.tenant_id,
        RecoverySuggestion.create(
            incident_id=env.incident_id,
            pattern_id=pattern["id"],
            suggestion_type=suggestion_type,
            confidence=confidence,
            action_type=plan.action_type,
            action_params=plan.params,
            occurrence_count=occurrences,
        ),
        plan.text,
    )
    if recovery.auto_applicable:
        recovery.mark_applied()
        save_recovery(conn, env.tenant_id, recovery)
        result = {
            "recovery": recovery.to_dict(),
            "occurrence_count": occurrences,
            "next": hand_off(LoopStage.POLICY_GENERATED, recovery_id=recovery.recovery_id),
        }
        record_stage(conn, _event(env, result, recovery))
        return StageOutcome(result, [env.next(LoopStage.POLICY_GENERATED, recovery_id=recovery.recovery_id)])

    checkpoint = insert_checkpoint(
        conn,
        HumanCheckpoint.create(
            checkpoint_type=HumanCheckpointType.APPROVE_RECOVERY,
            incident_id=env.incident_id,
            tenant_id=env.tenant_id,
            stage=STAGE,
            target_id=recovery.recovery_id,
            description=(
                f"Approve recovery '{recovery.action_type}' at {recovery.confidence} confidence "
                f"for pattern {pattern['id']} ({occurrences} occurrence(s)): {plan.text}"
            ),
        ),
    )
    result = {
        "recovery": recovery.to_dict(),
        "occurrence_count": occurrences,
        "checkpoint_id": checkpoint.checkpoint_id,
        "next": None,
    }
    record_stage(
        conn,
        _event(env, result, recovery, LoopFailureState.RECOVERY_PENDING_APPROVAL),
        completed=False,
        blocked=True,
        pending_checkpoints=[checkpoint.checkpoint_id],
    )
    return StageOutcome(result, [])


def _event(
    env: Envelope,
    details: dict[str, Any],
    recovery: RecoverySuggestion,
    failure: LoopFailureState | None = None,
) -> LoopEvent:
    return env.event(STAGE, details, failure_state=failure, confidence_band=recovery.confidence_band,
                     requires_human_review=failure is not None)
