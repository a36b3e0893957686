"""Ingest: store a reported incident once, open its loop, hand it to the first stage of the registry.

One report (the API) is ingest_incident(); a batch from the ingest queue is ingest_incidents(): one
transaction stores every incident and opens every loop (scoped to each tenant in turn), one write
persists their failures, one SendMessageBatch hands them on. When that transaction fails for anything
but an unavailable database, each message is ingested alone, so a bad one fails by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4, uuid5

from aws_lambda_powertools.utilities.batch import EventType

from incident_loop.batch import LoggingBatchProcessor, NotAttempted, each_tenant_apart, log_context
from incident_loop.db import DatabaseLockWait, DatabaseUnavailable
from incident_loop.failures.breaker_guard import persist_guard
from incident_loop.failures.persist import persist_failure, persist_failures
from incident_loop.loop import registry
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.failures import FailureIn
from incident_loop.schemas.incident import IncidentAccepted, IncidentIn, IncidentMessage, IncidentRecord
from incident_loop.schemas.loop.events import LoopEvent
from incident_loop.stores.ports import UnitOfWork
from incident_loop.stores.records import StageRecord

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
    with uow.batch(tenant_id):
        incident_id, created = uow.incidents.insert(f"inc_{uuid4().hex[:16]}", tenant_id, incident)
        uow.loop.lock(incident_id)
        loop_id = uow.loop.start(f"loop_{uuid4().hex[:16]}", incident_id, tenant_id)
        uow.loop.record_all([StageRecord(_opening(incident, incident_id, tenant_id))])
    logger.set_correlation_id(incident_id)
    logger.info("incident accepted", incident_id=incident_id, duplicate=not created)
    # Every failure also lands in the failure catalog (seed 002), bounded at 2 s: written or parked.
    # A repeated report persists it again, under the same id (a no-op once it landed): the first
    # attempt may have stored the incident and then found the failure could be neither written nor
    # parked, in which case persist_failure raised, the caller was told to retry (503, or the SQS
    # record failed back to its queue), and this is that retry.
    persist_failure(_failure(incident, incident_id, tenant_id), persist_guard())
    uow.queues.send(_first(incident_id, tenant_id, loop_id))
    return _accepted(incident_id, loop_id, created)


def _opening(incident: IncidentIn, incident_id: str, tenant_id: str) -> LoopEvent:
    """The loop's first event: the incident as reported."""
    return LoopEvent.create(
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
    )


def _failure(incident: IncidentIn, incident_id: str, tenant_id: str) -> FailureIn:
    """The incident's failure for the catalog, under an id derived from the tenant and the incident."""
    return FailureIn(run_id=incident.run_id, tenant_id=tenant_id, error_code=incident.error_type,
                     error_message=incident.error_message, skill_id=incident.skill_id,
                     context={**incident.context, "incident_id": incident_id},
                     failure_id=uuid5(INCIDENT_FAILURES, f"{tenant_id}/{incident_id}"))


def _first(incident_id: str, tenant_id: str, loop_id: str) -> Envelope:
    return Envelope(incident_id=incident_id, tenant_id=tenant_id, loop_id=loop_id,
                    stage=registry.first().stage, correlation_id=incident_id)


def _accepted(incident_id: str, loop_id: str, created: bool) -> IncidentAccepted:
    return IncidentAccepted(incident_id=incident_id, loop_id=loop_id, duplicate=not created,
                            status_url=f"/loops/{incident_id}")


def _store(uow: UnitOfWork, messages: Sequence[IncidentMessage]) -> list[tuple[str, str, bool]]:
    """Store the incidents and open their loops in one transaction, scoped to each tenant in turn:
    (incident, loop, new) of each message."""
    tenants: dict[str, list[int]] = {}
    for i, message in enumerate(messages):
        tenants.setdefault(message.tenant_id, []).append(i)
    stored: list[tuple[str, bool]] = [("", False)] * len(messages)
    loops: dict[str, str] = {}
    with uow.batch(messages[0].tenant_id):
        for tenant_id, indexes in tenants.items():
            uow.scope(tenant_id)
            new = uow.incidents.insert_many(tenant_id, [(f"inc_{uuid4().hex[:16]}", messages[i]) for i in indexes])
            for i, row in zip(indexes, new, strict=True):
                stored[i] = row
        uow.loop.lock_all({incident_id for incident_id, _ in stored})
        for tenant_id, indexes in tenants.items():
            uow.scope(tenant_id)
            first: dict[str, int] = {}  # one loop per incident, however many of its reports the batch holds
            for i in indexes:
                first.setdefault(stored[i][0], i)
            loops.update(uow.loop.start_all(tenant_id, [(f"loop_{uuid4().hex[:16]}", inc) for inc in first]))
            uow.loop.record_all([StageRecord(_opening(messages[i], inc, tenant_id)) for inc, i in first.items()])
    return [(incident_id, loops[incident_id], created) for incident_id, created in stored]


def ingest_incidents(messages: Sequence[IncidentMessage], *,
                     uow: UnitOfWork | None = None) -> list[IncidentAccepted | Exception]:
    """ingest_incident() for each message (its tenant named in it), as a batch; for each, what it answered
    or why it failed (an incident whose failure could be neither written nor parked is not acknowledged)."""
    if not messages:
        return []
    try:
        uow = unit_of_work(uow)  # connects, when the container has no connection yet
        stored = _store(uow, messages)
    except DatabaseUnavailable as exc:
        if isinstance(exc, DatabaseLockWait) and len({m.tenant_id for m in messages}) > 1:
            # One tenant's rows held elsewhere (its reports racing in another batch): its messages wait, no other's.
            logger.warning("batch waited past lock_timeout, ingesting each tenant's messages apart", reason=str(exc))
            return _each_tenant(messages, uow)  # type: ignore[arg-type]
        return [exc] * len(messages)
    except Exception as exc:  # noqa: BLE001 - one message's failure must not fail its neighbours
        if len(messages) == 1:
            return [exc]
        logger.warning("batch failed, ingesting its messages one by one", reason=f"{type(exc).__name__}: {exc}")
        return _each_alone(messages, uow)  # type: ignore[arg-type]
    results: list[IncidentAccepted | Exception | None] = [None] * len(messages)
    _persist_and_hand_off(uow, messages, [(i, *row) for i, row in enumerate(stored)], results)
    return results  # type: ignore[return-value]


def _each_tenant(messages: Sequence[IncidentMessage], uow: UnitOfWork) -> list[IncidentAccepted | Exception]:
    """ingest_incidents() for each tenant's messages by themselves (batch.each_tenant_apart)."""
    return each_tenant_apart(messages, lambda message: message.tenant_id,
                             lambda group: ingest_incidents(group, uow=uow))


def _each_alone(messages: Sequence[IncidentMessage], uow: UnitOfWork) -> list[IncidentAccepted | Exception]:
    """ingest_incident() for each message by itself; once the database is unavailable, the rest are left
    for redelivery untried."""
    answers: list[IncidentAccepted | Exception] = []
    for message in messages:
        unavailable = next((a for a in answers if isinstance(a, DatabaseUnavailable)), None)
        if unavailable is not None:
            answers.append(NotAttempted(f"the database is unavailable ({unavailable}); left for redelivery"))
            continue
        try:
            answers.append(ingest_incident(message, message.tenant_id, uow=uow))
        except Exception as exc:  # noqa: BLE001 - the message's own failure, reported for it alone
            answers.append(exc)
    return answers


def _persist_and_hand_off(uow: UnitOfWork, messages: Sequence[IncidentMessage],
                          batched: list[tuple[int, str, str, bool]],
                          results: list[IncidentAccepted | Exception | None]) -> None:
    """The batch's failures in one write (written or parked), then its first hand-offs in one send."""
    if not batched:
        return
    persisted = persist_failures([_failure(messages[i], incident_id, messages[i].tenant_id)
                                  for i, incident_id, _, _ in batched], persist_guard())
    sending = []
    for (i, incident_id, loop_id, created), outcome in zip(batched, persisted, strict=True):
        if isinstance(outcome, Exception):  # neither written nor parked: SQS delivers the incident again
            results[i] = outcome
        else:
            sending.append((i, incident_id, loop_id, created))
    sent = uow.queues.send_all([_first(incident_id, messages[i].tenant_id, loop_id)
                                for i, incident_id, loop_id, _ in sending])
    for (i, incident_id, loop_id, created), failure in zip(sending, sent, strict=True):
        results[i] = failure or _accepted(incident_id, loop_id, created)
        log_context(incident_id, messages[i].tenant_id, registry.OPENING.value)
        logger.info("incident accepted", incident_id=incident_id, duplicate=not created)


def incident_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The ingest function's handler of its queue's batches (ingest_incidents), with partial failures."""

    def run(records: list[IncidentRecord]) -> list[Any]:
        answers = ingest_incidents([record.body for record in records])
        return [a if isinstance(a, Exception) else a.model_dump() for a in answers]

    return LoggingBatchProcessor(event_type=EventType.SQS, model=IncidentRecord, batch_handler=run).handler
