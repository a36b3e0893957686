"""Ingest: store a reported incident once, open its loop, hand it to the first stage of the registry."""

from __future__ import annotations

from uuid import UUID, uuid4, uuid5

from incident_loop.failures.breaker_guard import persist_guard
from incident_loop.failures.persist import persist_failure
from incident_loop.loop import registry
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.failures import FailureIn
from incident_loop.schemas.incident import IncidentAccepted, IncidentIn
from incident_loop.schemas.loop.events import LoopEvent
from incident_loop.stores.ports import UnitOfWork

# One failure per incident: its failure_matches id is derived from the tenant and the incident.
INCIDENT_FAILURES = UUID("0b6a4c1e-3f2d-5a7b-9c8e-1d2f3a4b5c6d")


def ingest_incident(
    incident: IncidentIn,
    tenant_id: str,
    *,
    uow: UnitOfWork | None = None,
) -> IncidentAccepted:
    """Record the incident (idempotent on its key), its failure, and enqueue the first stage.

    A repeated report returns the first incident and re-sends its first stage's message: if the first
    attempt committed but never reached the queue, the retry is what gets the loop going. Raises
    DatabaseUnavailable (FailureNotPersisted included) when it cannot store what it must: retry it.
    """
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        incident_id, created = uow.incidents.insert(f"inc_{uuid4().hex[:16]}", tenant_id, incident)
        uow.loop.lock(incident_id)
        loop_id = uow.loop.start(f"loop_{uuid4().hex[:16]}", incident_id, tenant_id)
        uow.loop.record(
            LoopEvent.create(
                incident_id=incident_id,
                tenant_id=tenant_id,
                stage=registry.OPENING,
                details={
                    "agent_id": incident.agent_id,
                    "run_id": incident.run_id,
                    "error_type": incident.error_type,
                    "severity": incident.severity.value,
                    "skill_id": incident.skill_id,
                },
            ),
        )
    logger.set_correlation_id(incident_id)
    logger.info("incident accepted", incident_id=incident_id, duplicate=not created)
    # Every failure also lands in the failure catalog (seed 002), bounded at 2 s: written or parked.
    # A repeated report persists it again, under the same id (a no-op once it landed): the first
    # attempt may have stored the incident and then found the failure could be neither written nor
    # parked, in which case persist_failure raised, the caller was told to retry (503, or the SQS
    # record failed back to its queue), and this is that retry.
    persist_failure(
        FailureIn(run_id=incident.run_id, tenant_id=tenant_id, error_code=incident.error_type,
                  error_message=incident.error_message, skill_id=incident.skill_id,
                  context={**incident.context, "incident_id": incident_id},
                  failure_id=uuid5(INCIDENT_FAILURES, f"{tenant_id}/{incident_id}")),
        persist_guard(),
    )
    uow.queues.send(
        Envelope(
            incident_id=incident_id,
            tenant_id=tenant_id,
            loop_id=loop_id,
            stage=registry.first().stage,
            correlation_id=incident_id,
        )
    )
    return IncidentAccepted(
        incident_id=incident_id, loop_id=loop_id, duplicate=not created, status_url=f"/loops/{incident_id}"
    )
