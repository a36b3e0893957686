"""Persisting every failure of an agent run: never blocks its caller past 2 s, never raises, never drops.

The write runs on a worker thread with a deadline (seed 002: 2 s). When the catalog-persist breaker
is open, the write fails, or the deadline passes, the failure is parked on the retry queue and the
caller goes on; the replay function lands it later. A write that finished after its deadline and is
replayed too changes nothing: the row's id is the idempotency key.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Protocol

import boto3
import psycopg
from aws_lambda_powertools.metrics import MetricUnit
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from incident_loop.catalog.matching import Catalog
from incident_loop.catalog.sync import load as load_catalog
from incident_loop.db import connect, conninfo, set_tenant, transaction
from incident_loop.failures.store import FailureRecord, insert
from incident_loop.observability import logger, metrics
from incident_loop.settings import get_settings

PERSIST_TIMEOUT_S = 2.0


class FailureIn(BaseModel):
    """A failure as the runtime reports it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, max_length=255)
    tenant_id: str = Field(min_length=1, max_length=128)
    error_code: str = Field(min_length=1, max_length=255)
    error_message: str | None = Field(default=None, max_length=8000)
    skill_id: str | None = Field(default=None, max_length=100)
    step_index: int | None = Field(default=None, ge=0)
    context: dict[str, Any] | None = None
    failure_id: uuid.UUID | None = None


class PersistGuard(Protocol):
    """What persistence needs of the catalog-persist breaker."""

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self, reason: str) -> None: ...


class Outcome(BaseModel):
    failure_id: uuid.UUID
    result: Literal["stored", "parked", "dropped"]
    catalog_match: Literal["exact", "pattern", "miss"]
    reason: str | None = None


@cache
def catalog() -> Catalog:
    """The catalog synced into PostgreSQL, read once per container; the shipped file if it cannot be read.

    The read has its own 1 s budget, so even a cold start stays inside the 2 s bound.
    """
    try:
        with psycopg.connect(conninfo(), connect_timeout=1, options="-c statement_timeout=500",
                             row_factory=dict_row) as conn:
            synced = load_catalog(conn)
    except psycopg.Error as exc:
        logger.warning("error catalog not readable from the database, using the shipped file", error=str(exc))
        synced = None
    return synced or Catalog.from_file()


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="failure-persist")


def to_record(failure: FailureIn, found: Catalog | None = None) -> FailureRecord:
    """The failure matched against the catalog, as the row it becomes."""
    match = (found or catalog()).match(failure.error_code, failure.error_message)
    entry = match.entry
    return FailureRecord(
        id=failure.failure_id or uuid.uuid4(), run_id=failure.run_id, tenant_id=failure.tenant_id,
        error_code=failure.error_code, error_message=failure.error_message, catalog_entry_id=match.catalog_entry_id,
        match_type=match.match_type, match_confidence=match.confidence,
        category=entry.category if entry else None, severity=entry.severity if entry else None,
        is_retryable=entry.is_retryable if entry else False, recovery_mode=entry.recovery_mode if entry else None,
        recovery_suggestion=entry.recovery_suggestion if entry else None, skill_id=failure.skill_id,
        step_index=failure.step_index, context_json=failure.context, created_at=datetime.now(UTC),
    )


def _write(record: FailureRecord, dsn: str | None) -> None:
    # Its own short-lived connection with server-side timeouts: a stalled database costs this
    # thread, never the caller, and the statement is cancelled soon after the caller gave up.
    with connect(dsn) as conn:
        conn.execute("SELECT set_config('statement_timeout', %(ms)s, false)",
                     {"ms": str(int(PERSIST_TIMEOUT_S * 1000) + 500)})
        set_tenant(conn, record.tenant_id)  # this transaction's (committed just below)
        insert(conn, record)
        conn.commit()


def park(record: FailureRecord, reason: str) -> Literal["parked", "dropped"]:
    """Put the record on the retry queue; 'dropped' only if the queue itself refused it."""
    url = get_settings().failure_retry_queue_url
    try:
        if not url:
            raise RuntimeError("FAILURE_RETRY_QUEUE_URL is not configured")
        _sqs().send_message(QueueUrl=url, MessageBody=record.model_dump_json(),
                            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:250]}})
    except Exception as exc:  # noqa: BLE001 - the caller must never see this; it is counted and logged
        metrics.add_metric(name="FailurePersistDropped", unit=MetricUnit.Count, value=1)
        logger.error("failure dropped", failure_id=str(record.id), reason=reason, park_error=str(exc))
        return "dropped"
    metrics.add_metric(name="FailurePersistParked", unit=MetricUnit.Count, value=1)
    logger.warning("failure parked", failure_id=str(record.id), reason=reason)
    return "parked"


def persist_failure(failure: FailureIn, guard: PersistGuard | None = None, *, dsn: str | None = None,
                    timeout_s: float = PERSIST_TIMEOUT_S) -> Outcome:
    """Match and store a failure within `timeout_s`; park it instead when that cannot happen."""
    record = to_record(failure)
    hit = record.catalog_entry_id is not None
    metrics.add_metric(name="FailureMatchHits" if hit else "FailureMatchMisses", unit=MetricUnit.Count, value=1)
    outcome = {"failure_id": record.id, "catalog_match": record.match_type}
    if guard is not None and not guard.allow():
        return Outcome(**outcome, result=park(record, "breaker_open"), reason="breaker_open")
    future = _pool.submit(_write, record, dsn)
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        reason = f"write exceeded {timeout_s}s"
    except Exception as exc:  # noqa: BLE001 - any database failure parks the record
        reason = f"{type(exc).__name__}: {exc}"[:250]
    else:
        if guard is not None:
            guard.record_success()
        return Outcome(**outcome, result="stored")
    if guard is not None:
        guard.record_failure(reason)
    return Outcome(**outcome, result=park(record, reason), reason=reason)


def replay(record: FailureRecord) -> bool:
    """Land a parked failure (the retry queue's consumer); True when this call inserted it."""
    with transaction(tenant_id=record.tenant_id) as conn:
        inserted = insert(conn, record)
    metrics.add_metric(name="FailurePersistReplayed", unit=MetricUnit.Count, value=1)
    return inserted


def persist(failure: FailureIn, *, dsn: str | None = None) -> Outcome:
    """The runtime's entry: persist_failure behind the shared catalog-persist breaker."""
    from incident_loop.failures.breaker_guard import persist_guard

    return persist_failure(failure, persist_guard(), dsn=dsn)
