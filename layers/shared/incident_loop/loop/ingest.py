"""Ingest: store a reported incident once, open its loop, hand it to Bridge 1."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4, uuid5

from psycopg import Connection

from incident_loop.db import get_connection, transaction
from incident_loop.failures.breaker_guard import persist_guard
from incident_loop.failures.persist import FailureIn, persist_failure
from incident_loop.observability import logger
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import IncidentAccepted, IncidentIn
from incident_loop.schemas.loop_events import LoopEvent, LoopStage
from incident_loop.stores.incidents import insert_incident
from incident_loop.stores.loop_store import lock_incident, record_stage, start_trace
from incident_loop.stores.queues import SqsStageQueues, StageQueues

# One failure per incident: its failure_matches id is derived from the tenant and the incident.
INCIDENT_FAILURES = UUID("0b6a4c1e-3f2d-5a7b-9c8e-1d2f3a4b5c6d")


def ingest_incident(
    incident: IncidentIn,
    tenant_id: str,
    *,
    conn: Connection[Any] | None = None,
    queues: StageQueues | None = None,
) -> IncidentAccepted:
    """Record the incident (idempotent on its key), its failure, and enqueue Bridge 1.

    A repeated report returns the first incident and re-sends its Bridge 1 message: if the first
    attempt committed but never reached the queue, the retry is what gets the loop going. Raises
    DatabaseUnavailable (FailureNotPersisted included) when it cannot store what it must: retry it.
    """
    conn = conn or get_connection()
    with transaction(conn, tenant_id=tenant_id):
        incident_id, created = insert_incident(conn, f"inc_{uuid4().hex[:16]}", tenant_id, incident)
        lock_incident(conn, incident_id)
        loop_id = start_trace(conn, f"loop_{uuid4().hex[:16]}", incident_id, tenant_id)
        record_stage(
            conn,
            LoopEvent.create(
                incident_id=incident_id,
                tenant_id=tenant_id,
                stage=LoopStage.INCIDENT_CREATED,
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
    (queues or SqsStageQueues()).send(
        Envelope(
            incident_id=incident_id,
            tenant_id=tenant_id,
            loop_id=loop_id,
            stage=LoopStage.PATTERN_MATCHED,
            correlation_id=incident_id,
        )
    )
    return IncidentAccepted(
        incident_id=incident_id, loop_id=loop_id, duplicate=not created, status_url=f"/loops/{incident_id}"
    )
