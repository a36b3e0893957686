"""Bridge 2: Pattern -> Recovery. Confidence grows with occurrences; low confidence waits for a person."""

from __future__ import annotations

from collections.abc import Sequence

from incident_loop.loop.announce import announce
from incident_loop.loop.errors import NotReady
from incident_loop.loop.merges import current_pattern
from incident_loop.loop.outcome import StageOutcome
from incident_loop.loop.recovery_templates import plan_for
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.confidence import STRONG_MATCH_THRESHOLD, ConfidenceCalculator
from incident_loop.schemas.loop.enums import HumanCheckpointType, LoopFailureState, NotificationEvent
from incident_loop.schemas.loop.events import HumanCheckpoint
from incident_loop.schemas.loop.results import RecoverySuggestion
from incident_loop.stores.ports import UnitOfWork


def read_ahead(uow: UnitOfWork, envs: Sequence[Envelope]) -> None:
    """For a batch of one tenant: its incidents and their patterns, in two reads."""
    tenant = envs[0].tenant_id
    uow.incidents.get_many(tenant, {env.incident_id for env in envs})
    uow.patterns.get_many(tenant, {str(env.payload.get("pattern_id", "")) for env in envs})


def suggest_recovery(uow: UnitOfWork, env: Envelope) -> StageOutcome:
    """Answer the incident's pattern with a recovery; auto-apply it or open an approval checkpoint (announced
    to the tenant's targets, if it has any)."""
    incident = uow.incidents.get(env.tenant_id, env.incident_id)
    # The pattern as it is now: Bridge 1 may have merged the one the hand-off names into a sibling since.
    pattern = current_pattern(uow, env.tenant_id, str(env.payload.get("pattern_id", "")))
    if incident is None or pattern is None:
        raise NotReady(f"incident {env.incident_id} or its pattern is not stored yet")
    occurrences = int(env.payload["occurrence_count"])
    suggestion_type, plan = plan_for(pattern["category"], incident["error_type"], incident["skill_id"])
    confidence = ConfidenceCalculator.calculate_recovery_confidence(occurrences)
    # People rejected this action for the pattern the last time they were asked: asked again, never auto-applied
    # (it was, on the third occurrence, however often they had said no).
    rejected_last = uow.recoveries.last_decision(env.tenant_id, pattern["id"], plan.action_type) == "rejected"
    # How sure Bridge 1 was that the incident belongs with the pattern (a hand-off without it, from before it was
    # sent, is not sure): a weak match asks a person, however often the pattern was seen.
    match = env.payload.get("match_confidence")
    match_confidence = None if match is None else float(match)
    recovery = uow.recoveries.insert(
        env.tenant_id,
        RecoverySuggestion.create(
            incident_id=env.incident_id,
            pattern_id=pattern["id"],
            suggestion_type=suggestion_type,
            confidence=confidence,
            action_type=plan.action_type,
            action_params=plan.params,
            occurrence_count=occurrences,
            rejected_last=rejected_last,
            match_confidence=match_confidence,
        ),
        plan.text,
    )
    if recovery.auto_applicable:
        recovery.mark_applied()
        uow.recoveries.save(env.tenant_id, recovery)
        return StageOutcome(
            {"recovery": recovery.to_dict(), "occurrence_count": occurrences},
            hand_off={"recovery_id": recovery.recovery_id},
            confidence_band=recovery.confidence_band,
        )

    checkpoint = uow.checkpoints.insert(
        HumanCheckpoint.create(
            checkpoint_type=HumanCheckpointType.APPROVE_RECOVERY,
            incident_id=env.incident_id,
            tenant_id=env.tenant_id,
            stage=env.stage,
            target_id=recovery.recovery_id,
            description=(
                f"Approve recovery '{recovery.action_type}' at {recovery.confidence} confidence "
                f"for pattern {pattern['id']} ({occurrences} occurrence(s)): {plan.text}"
                + (" (rejected the last time a person was asked)" if rejected_last else "")
                + (f" (the incident matched the pattern at {match_confidence} confidence only)"
                   if match_confidence is not None and match_confidence < STRONG_MATCH_THRESHOLD else "")
            ),
        ),
    )
    announce(uow, env.tenant_id, NotificationEvent.CHECKPOINT_CREATED, checkpoint.checkpoint_id,
             text=f"Checkpoint {checkpoint.checkpoint_id} needs a decision: {checkpoint.description}",
             occurred_at=checkpoint.created_at.isoformat(),
             data={"incident_id": env.incident_id, "checkpoint_type": checkpoint.checkpoint_type.value,
                   "target_id": checkpoint.target_id, "description": checkpoint.description,
                   "options": list(checkpoint.options)})
    # The loop waits here; resolving the checkpoint (loop.checkpoints) hands it on.
    return StageOutcome(
        {"recovery": recovery.to_dict(), "occurrence_count": occurrences, "checkpoint_id": checkpoint.checkpoint_id},
        failure_state=LoopFailureState.RECOVERY_PENDING_APPROVAL,
        confidence_band=recovery.confidence_band,
        waiting_on=(checkpoint.checkpoint_id,),
    )
