"""Resolving a human checkpoint: approval resumes the loop at the next stage, rejection ends it."""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from incident_loop.db import get_connection, transaction
from incident_loop.loop.errors import Conflict, NotFound
from incident_loop.loop.stage import hand_off
from incident_loop.schemas.api import ResolveCheckpoint
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import HumanCheckpoint, LoopEvent, LoopFailureState, LoopStage
from incident_loop.stores.checkpoints import get_checkpoint, list_checkpoints, save_resolution
from incident_loop.stores.incidents import set_status
from incident_loop.stores.loop_store import get_trace, lock_incident, record_stage
from incident_loop.stores.queues import SqsStageQueues, StageQueues
from incident_loop.stores.recoveries import get_recovery, save_recovery


def pending_checkpoints(tenant_id: str, pending_only: bool = True) -> list[HumanCheckpoint]:
    with transaction(tenant_id=tenant_id) as conn:
        return list_checkpoints(conn, tenant_id, pending_only)


def resolve_checkpoint(
    tenant_id: str,
    checkpoint_id: str,
    decision: ResolveCheckpoint,
    *,
    conn: Connection[Any] | None = None,
    queues: StageQueues | None = None,
) -> dict[str, Any]:
    """Apply a person's decision; an approved recovery hands the loop on to Bridge 3."""
    conn = conn or get_connection()
    resume: Envelope | None = None
    with transaction(conn, tenant_id=tenant_id):
        checkpoint = get_checkpoint(conn, tenant_id, checkpoint_id)
        if checkpoint is None:
            raise NotFound(f"checkpoint {checkpoint_id} not found")
        lock_incident(conn, checkpoint.incident_id)
        if not checkpoint.is_pending():
            raise Conflict(
                f"checkpoint {checkpoint_id} was already resolved ({checkpoint.resolution}"
                f" by {checkpoint.resolved_by})"
            )
        recovery = get_recovery(conn, tenant_id, checkpoint.target_id)
        if recovery is None:  # the checkpoint references a recovery created in the same transaction
            raise NotFound(f"recovery {checkpoint.target_id} not found")
        checkpoint.resolve(decision.resolution, decision.resolved_by)
        save_resolution(conn, tenant_id, checkpoint, decision.reason)
        trace = get_trace(conn, tenant_id, checkpoint.incident_id)
        assert trace is not None

        if decision.resolution == "reject":
            recovery.reject(decision.reason or f"rejected by {decision.resolved_by}")
            failure: LoopFailureState | None = LoopFailureState.RECOVERY_REJECTED
            set_status(conn, tenant_id, checkpoint.incident_id, "rejected")
        else:
            if decision.resolution == "modify" and decision.modifications:
                recovery.action_params = {**recovery.action_params, **decision.modifications}
            recovery.add_confirmation()
            # A person's approval settles it, whatever the computed confirmation level was.
            recovery.status = "approved"
            failure = None
            resume = Envelope(
                incident_id=checkpoint.incident_id,
                tenant_id=tenant_id,
                loop_id=trace["loop_id"],
                stage=LoopStage.POLICY_GENERATED,
                correlation_id=checkpoint.incident_id,
                payload={"recovery_id": recovery.recovery_id},
            )
        save_recovery(conn, tenant_id, recovery)
        details = {
            "recovery": recovery.to_dict(),
            "checkpoint_id": checkpoint.checkpoint_id,
            "resolution": decision.resolution,
            "resolved_by": decision.resolved_by,
            "reason": decision.reason,
            "next": hand_off(resume.stage, **resume.payload) if resume else None,
        }
        record_stage(
            conn,
            LoopEvent.create(
                incident_id=checkpoint.incident_id,
                tenant_id=tenant_id,
                stage=LoopStage.RECOVERY_SUGGESTED,
                details=details,
                failure_state=failure,
                confidence_band=recovery.confidence_band,
            ),
            key=f"{LoopStage.RECOVERY_SUGGESTED.value}:{decision.resolution}",
            completed=failure is None,
        )
    if resume is not None:
        (queues or SqsStageQueues()).send(resume)
    return {"checkpoint": checkpoint.model_dump(mode="json"), "recovery": recovery.to_dict(),
            "resumed_at": resume.stage.value if resume else None}
