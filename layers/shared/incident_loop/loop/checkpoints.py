"""Resolving a human checkpoint: approval resumes the loop at the next stage, rejection ends it."""

from __future__ import annotations

from typing import Any

from incident_loop.loop import registry
from incident_loop.loop.errors import Conflict, NotFound
from incident_loop.loop.outcome import StageOutcome, handed_off, record
from incident_loop.loop.wiring import unit_of_work
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.enums import LoopFailureState
from incident_loop.schemas.loop.events import HumanCheckpoint
from incident_loop.schemas.loop.requests import ResolveCheckpoint
from incident_loop.stores.ports import UnitOfWork


def pending_checkpoints(tenant_id: str, pending_only: bool = True, *,
                        uow: UnitOfWork | None = None) -> list[HumanCheckpoint]:
    """The tenant's checkpoints, oldest first: the open ones, or all."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        return uow.checkpoints.of_tenant(tenant_id, pending_only)


def resolve_checkpoint(
    tenant_id: str,
    checkpoint_id: str,
    decision: ResolveCheckpoint,
    *,
    uow: UnitOfWork | None = None,
) -> dict[str, Any]:
    """Apply a person's decision; an approved recovery hands the loop on to the stage after the checkpoint's."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        checkpoint = uow.checkpoints.get(tenant_id, checkpoint_id)
        if checkpoint is None:
            raise NotFound(f"checkpoint {checkpoint_id} not found")
        uow.loop.lock(checkpoint.incident_id)
        if not checkpoint.is_pending():
            if checkpoint.resolution != decision.resolution:
                raise Conflict(
                    f"checkpoint {checkpoint_id} was already resolved ({checkpoint.resolution}"
                    f" by {checkpoint.resolved_by})"
                )
            # The same decision again (a client retrying after a 503): what it handed on is sent again, so a
            # hand-off the queue refused after the commit does not strand the loop (the next stage replays a
            # message it has seen).
            repeated = True
            recovery = uow.recoveries.get(tenant_id, checkpoint.target_id)
            trace = uow.loop.trace(tenant_id, checkpoint.incident_id)
            details = uow.loop.result(tenant_id, checkpoint.incident_id,
                                      f"{checkpoint.stage.value}:{checkpoint.resolution}")
            assert recovery is not None and trace is not None
            resume = handed_off(_at(checkpoint, tenant_id, trace), details) if details else None
        else:
            repeated = False
            recovery, resume = _resolve(uow, tenant_id, checkpoint, decision)
    if resume is not None:
        uow.queues.send(resume)
    return {"checkpoint": checkpoint.model_dump(mode="json"), "recovery": recovery.to_dict(),
            "resumed_at": resume.stage.value if resume else None, "repeated": repeated}


def _resolve(uow: UnitOfWork, tenant_id: str, checkpoint: HumanCheckpoint, decision: ResolveCheckpoint
             ) -> tuple[Any, Envelope | None]:
    """Apply the decision to a pending checkpoint (in the caller's transaction); (the recovery, the envelope
    that resumes the loop on approval)."""
    recovery = uow.recoveries.get(tenant_id, checkpoint.target_id)
    if recovery is None:  # the checkpoint references a recovery created in the same transaction
        raise NotFound(f"recovery {checkpoint.target_id} not found")
    checkpoint.resolve(decision.resolution, decision.resolved_by)
    uow.checkpoints.save_resolution(tenant_id, checkpoint, decision.reason)
    trace = uow.loop.trace(tenant_id, checkpoint.incident_id)
    assert trace is not None

    if decision.resolution == "reject":
        recovery.reject(decision.reason or f"rejected by {decision.resolved_by}")
        failure: LoopFailureState | None = LoopFailureState.RECOVERY_REJECTED
        uow.incidents.set_status(tenant_id, checkpoint.incident_id, "rejected")
    else:
        if decision.resolution == "modify" and decision.modifications:
            recovery.action_params = {**recovery.action_params, **decision.modifications}
        recovery.add_confirmation()
        # A person's approval settles it, whatever the computed confirmation level was.
        recovery.status = "approved"
        failure = None
    uow.recoveries.save(tenant_id, recovery)
    # The stage that opened the checkpoint is recorded again, under the decision: its hand-off
    # (on approval) goes where the stage's own would have gone.
    at = _at(checkpoint, tenant_id, trace)
    outcome = StageOutcome(
        {
            "recovery": recovery.to_dict(),
            "checkpoint_id": checkpoint.checkpoint_id,
            "resolution": decision.resolution,
            "resolved_by": decision.resolved_by,
            "reason": decision.reason,
        },
        hand_off=None if failure else {"recovery_id": recovery.recovery_id},
        failure_state=failure,
        confidence_band=recovery.confidence_band,
    )
    _, resume = record(uow, at, outcome, registry.stage(checkpoint.stage).next,
                       key=f"{checkpoint.stage.value}:{decision.resolution}")
    return recovery, resume


def _at(checkpoint: HumanCheckpoint, tenant_id: str, trace: dict[str, Any]) -> Envelope:
    """The envelope of the stage that opened the checkpoint, which its decision is recorded under."""
    return Envelope(incident_id=checkpoint.incident_id, tenant_id=tenant_id, loop_id=trace["loop_id"],
                    stage=checkpoint.stage, correlation_id=checkpoint.incident_id)
