"""Persisting every failure of an agent run: never blocks its caller past 2 s, never drops one.

The write runs on a worker thread with a deadline (seed 002: 2 s), on one of a few connections the
workers reuse across invocations, each write in its own transaction bounded a little past the deadline
(SET LOCAL statement_timeout and lock_timeout). When the catalog-persist breaker is open, the write
fails, or the deadline passes, the failure is parked on the retry queue and the caller goes on; the
replay function lands it later. When it can be neither written nor parked, persist_failure raises
FailureNotPersisted: the caller must not acknowledge it (an SQS record fails back to its queue, the
API answers 503 and the client's retry is idempotent).

A failure's id is derived from what it says (tenant, run, step, code, message, skill, context) unless
the producer gave one, so a redelivered message, a producer's retry, a late write and its replay
all land on the same row.

A batch of failures (an SQS batch of incidents) is one write: one pipelined transaction per tenant
(one round trip), on a pooled connection whose bounds were set when it connected, under the same
deadline; parked together, ten to a SendMessageBatch, when it cannot be.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from incident_loop import aws
from incident_loop.catalog.lookup import Catalog
from incident_loop.db import ConnectionPool, DatabaseUnavailable, ValueTooLarge, conninfo, set_tenant, transaction
from incident_loop.failures.breaker_guard import PersistGuard, persist_guard
from incident_loop.failures.catalog_source import catalog
from incident_loop.observability import logger, metrics
from incident_loop.schemas.failures import FailureIn, FailureRecord
from incident_loop.settings import get_settings
from incident_loop.stores.failures import insert, insert_many
from incident_loop.stores.queues import send_batches

PERSIST_TIMEOUT_S = 2.0
# The server cancels a write soon after its caller gave up on it (the caller has parked it by then).
WRITE_BOUND_MS = int(PERSIST_TIMEOUT_S * 1000) + 500


class FailureNotPersisted(DatabaseUnavailable):
    """A failure could be neither written nor parked: it must not be acknowledged."""


class Outcome(BaseModel):
    failure_id: uuid.UUID
    result: Literal["stored", "parked"]
    catalog_match: Literal["exact", "pattern", "miss"]
    reason: str | None = None


_workers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="failure-persist")


# The workers' connections, reused across warm invocations (at most one per worker, per database),
# bounded when they connect as every write on them is: the server cancels what the caller gave up on.
connections = ConnectionPool(connect_timeout_s=max(2, int(PERSIST_TIMEOUT_S)), statement_timeout_ms=WRITE_BOUND_MS,
                             lock_timeout_ms=WRITE_BOUND_MS)


def to_record(failure: FailureIn, found: Catalog | None = None) -> FailureRecord:
    """The failure matched against the catalog, as the row it becomes."""
    match = (found or catalog()).match(failure.error_code, failure.error_message)
    entry = match.entry
    return FailureRecord(
        id=failure.derived_id(), run_id=failure.run_id, tenant_id=failure.tenant_id,
        error_code=failure.error_code, error_message=failure.error_message, catalog_entry_id=match.catalog_entry_id,
        match_type=match.match_type, match_confidence=match.confidence,
        category=entry.category if entry else None, severity=entry.severity if entry else None,
        is_retryable=entry.is_retryable if entry else False, recovery_mode=entry.recovery_mode if entry else None,
        recovery_suggestion=entry.recovery_suggestion if entry else None, skill_id=failure.skill_id,
        step_index=failure.step_index, context_json=failure.context, created_at=datetime.now(UTC),
    )


def _write(record: FailureRecord, dsn: str | None) -> None:
    # A stalled database costs this worker, never the caller, and the statement is cancelled by
    # the server soon after the caller gave up (its transaction's own, tighter bounds).
    dsn = dsn or conninfo()
    conn = connections.take(dsn)
    try:
        with transaction(conn, tenant_id=record.tenant_id, statement_timeout_ms=WRITE_BOUND_MS,
                         lock_timeout_ms=WRITE_BOUND_MS):
            insert(conn, record)
    finally:
        connections.give_back(dsn, conn)


def _write_all(records: Sequence[FailureRecord], dsn: str | None) -> None:
    # One pipelined transaction, scoped to each tenant in turn: BEGIN, the scopes, one insert per tenant
    # and COMMIT in one round trip.
    dsn = dsn or conninfo()
    conn = connections.take(dsn)
    try:
        tenants: dict[str, list[FailureRecord]] = {}
        for record in records:
            tenants.setdefault(record.tenant_id, []).append(record)
        with transaction(conn, tenant_id=records[0].tenant_id, statement_timeout_ms=WRITE_BOUND_MS,
                         lock_timeout_ms=WRITE_BOUND_MS, pipelined=True):
            for tenant_id, group in tenants.items():
                set_tenant(conn, tenant_id)
                insert_many(conn, group)
    finally:
        connections.give_back(dsn, conn)


def park(record: FailureRecord, reason: str) -> Literal["parked"]:
    """Put the record on the retry queue; raises FailureNotPersisted when the queue refuses it too."""
    url = get_settings().failure_retry_queue_url
    try:
        if not url:
            raise RuntimeError("FAILURE_RETRY_QUEUE_URL is not configured")
        aws.sqs().send_message(QueueUrl=url, MessageBody=record.model_dump_json(),
                               MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:250]}})
    except Exception as exc:
        metrics.add_metric(name="FailurePersistRefused", unit=MetricUnit.Count, value=1)
        logger.error("failure neither written nor parked, returned to the caller", failure_id=str(record.id),
                     reason=reason, park_error=str(exc))
        raise FailureNotPersisted(f"failure {record.id} could be neither written ({reason}) nor parked"
                                  f" ({type(exc).__name__})") from exc
    metrics.add_metric(name="FailurePersistParked", unit=MetricUnit.Count, value=1)
    logger.warning("failure parked", failure_id=str(record.id), reason=reason)
    return "parked"


def persist_failure(failure: FailureIn, guard: PersistGuard | None = None, *, dsn: str | None = None,
                    timeout_s: float = PERSIST_TIMEOUT_S) -> Outcome:
    """Match and store a failure within `timeout_s`; park it instead when that cannot happen.

    Raises FailureNotPersisted when it can be neither written nor parked (never acknowledge it then).
    """
    started = time.monotonic()  # the catalog's read (a cold start) comes out of the same 2 s
    record = to_record(failure)
    hit = record.catalog_entry_id is not None
    metrics.add_metric(name="FailureMatchHits" if hit else "FailureMatchMisses", unit=MetricUnit.Count, value=1)
    outcome = {"failure_id": record.id, "catalog_match": record.match_type}
    if guard is not None and not guard.allow():
        return Outcome(**outcome, result=park(record, "breaker_open"), reason="breaker_open")
    reason = _bounded_write(_write, record, dsn, timeout_s, guard, _left(started, timeout_s))
    if reason is None:
        return Outcome(**outcome, result="stored")
    return Outcome(**outcome, result=park(record, reason), reason=reason)


def _left(started: float, timeout_s: float) -> float:
    """What is left of the caller's `timeout_s` since `started` (a little at least: the write is tried)."""
    return max(timeout_s - (time.monotonic() - started), 0.05)


def _bounded_write(write: Callable[[Any, str | None], None], what: Any, dsn: str | None, timeout_s: float,
                   guard: PersistGuard | None, wait_s: float | None = None) -> str | None:
    """write(what, dsn) within `timeout_s` (of which `wait_s` is left), its outcome told to the guard: None when
    it was stored, else why not (the caller parks what was not stored)."""
    future = _workers.submit(write, what, dsn)
    try:
        future.result(timeout=timeout_s if wait_s is None else wait_s)
    except concurrent.futures.TimeoutError:
        reason = f"write exceeded {timeout_s}s"
    except (psycopg.DataError, psycopg.IntegrityError, ValueTooLarge) as exc:  # the record's own fault (an id another
        # tenant holds, migration 0019): the database answered
        if guard is not None:
            guard.record_success()  # (and a half-open probe's slot is given back, not held to its timeout)
        return f"{type(exc).__name__}: {exc}"[:250]
    except Exception as exc:  # noqa: BLE001 - any database failure parks what was to be written
        reason = f"{type(exc).__name__}: {exc}"[:250]
    else:
        if guard is not None:
            guard.record_success()
        return None
    if guard is not None:
        guard.record_failure(reason)
    return reason


def park_all(records: Sequence[FailureRecord], reason: str) -> list[Outcome | FailureNotPersisted]:
    """park() each, ten to a SendMessageBatch; a record the queue refused is FailureNotPersisted."""
    url = get_settings().failure_retry_queue_url
    attributes = {"reason": {"DataType": "String", "StringValue": reason[:250]}}
    if url:
        refused: list[Exception | None] = list(send_batches(
            aws.sqs(), url, [r.model_dump_json() for r in records], [attributes] * len(records)))
    else:
        refused = [RuntimeError("FAILURE_RETRY_QUEUE_URL is not configured")] * len(records)
    answers: list[Outcome | FailureNotPersisted] = []
    for record, error in zip(records, refused, strict=True):
        if error is None:
            metrics.add_metric(name="FailurePersistParked", unit=MetricUnit.Count, value=1)
            logger.warning("failure parked", failure_id=str(record.id), reason=reason)
            answers.append(Outcome(failure_id=record.id, catalog_match=record.match_type,  # type: ignore[arg-type]
                                   result="parked", reason=reason))
            continue
        metrics.add_metric(name="FailurePersistRefused", unit=MetricUnit.Count, value=1)
        logger.error("failure neither written nor parked, returned to the caller", failure_id=str(record.id),
                     reason=reason, park_error=str(error))
        answers.append(FailureNotPersisted(f"failure {record.id} could be neither written ({reason}) nor parked"
                                           f" ({type(error).__name__})"))
    return answers


def persist_failures(failures: Sequence[FailureIn], guard: PersistGuard | None = None, *, dsn: str | None = None,
                     timeout_s: float = PERSIST_TIMEOUT_S) -> list[Outcome | FailureNotPersisted]:
    """persist_failure() for a batch, in one write within `timeout_s`; parked together when that cannot happen.

    For each failure, in order: its Outcome, or FailureNotPersisted when it could be neither written nor
    parked (never acknowledge that one).
    """
    started = time.monotonic()
    records = [to_record(f) for f in failures]
    if not records:
        return []
    hits = sum(1 for r in records if r.catalog_entry_id is not None)
    if hits:
        metrics.add_metric(name="FailureMatchHits", unit=MetricUnit.Count, value=hits)
    if len(records) > hits:
        metrics.add_metric(name="FailureMatchMisses", unit=MetricUnit.Count, value=len(records) - hits)
    if guard is not None and not guard.allow():
        return park_all(records, "breaker_open")
    reason = _bounded_write(_write_all, records, dsn, timeout_s, guard, _left(started, timeout_s))
    if reason is None:
        return [Outcome(failure_id=r.id, catalog_match=r.match_type, result="stored")  # type: ignore[arg-type]
                for r in records]
    return park_all(records, reason)


def replay(record: FailureRecord) -> bool:
    """Land a parked failure (the retry queue's consumer); True when this call inserted it."""
    with transaction(tenant_id=record.tenant_id) as conn:
        inserted = insert(conn, record)
    metrics.add_metric(name="FailurePersistReplayed", unit=MetricUnit.Count, value=1)
    return inserted


def persist(failure: FailureIn, *, dsn: str | None = None) -> Outcome:
    """The runtime's entry: persist_failure behind the shared catalog-persist breaker."""
    return persist_failure(failure, persist_guard(), dsn=dsn)
