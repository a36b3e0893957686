"""Breaker history: one row per transition in PostgreSQL (migration 0005), idempotent on (name, version)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import psycopg
from aws_lambda_powertools.metrics import MetricUnit
from psycopg.types.json import Jsonb

from incident_loop.breaker.state import Transition
from incident_loop.db import connect
from incident_loop.observability import logger, metrics

# Candidate setting: a history write must not hold up the caller of the transition for long.
STATEMENT_TIMEOUT_MS = 2000

INSERT = """
INSERT INTO breaker_history (breaker_name, from_state, to_state, version, reason, changed_by, details, created_at)
VALUES (%(breaker_name)s, %(from_state)s, %(to_state)s, %(version)s, %(reason)s, %(changed_by)s, %(details)s,
        %(created_at)s)
ON CONFLICT (breaker_name, version) DO NOTHING
"""

metrics_lock = threading.Lock()  # Powertools' metric set is a plain dict shared by every thread

RECENT = """
SELECT breaker_name, from_state, to_state, version, reason, changed_by, details, created_at
FROM breaker_history WHERE breaker_name = %(name)s ORDER BY created_at DESC, version DESC LIMIT %(limit)s
"""


class HistoryWriter(Protocol):
    """Where transitions are recorded. A failure raises; the breaker logs it and carries on."""

    def write(self, transition: Transition) -> None: ...


def _row(t: Transition) -> dict[str, Any]:
    return {"breaker_name": t.breaker, "from_state": t.from_state.value, "to_state": t.to_state.value,
            "version": t.version, "reason": t.reason, "changed_by": t.changed_by, "details": t.details,
            "created_at": t.at}


class MemoryHistory:
    """In-memory history for unit tests and benchmarks; as idempotent as the table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._seen: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def write(self, transition: Transition) -> None:
        with self._lock:
            key = (transition.breaker, transition.version)
            if key not in self._seen:
                self._seen.add(key)
                self.rows.append(_row(transition))

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [row for row in self.rows if row["breaker_name"] == name]


class PostgresHistory:
    """breaker_history on its own autocommit connection (opened on first write, reopened when broken)."""

    def __init__(self, dsn: str | None = None) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one connection, one statement at a time

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = connect(self._dsn, autocommit=True)
            conn.execute("SELECT set_config('statement_timeout', %(ms)s, false)", {"ms": str(STATEMENT_TIMEOUT_MS)})
            self._conn = conn
        return self._conn

    def write(self, transition: Transition) -> None:
        row = _row(transition) | {"details": Jsonb(transition.details)}
        with self._lock:
            try:
                self._connection().execute(INSERT, row)
            except psycopg.OperationalError:
                self.close_connection()
                raise

    def close_connection(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None


def recent(conn: psycopg.Connection[Any], name: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest transitions of one breaker, newest first."""
    return list(conn.execute(RECENT, {"name": name, "limit": limit}).fetchall())


def announce(t: Transition, history: HistoryWriter, callbacks: Iterable[Callable[[Transition], None]]) -> None:
    """A transition this process won: metric, log line, history row, callbacks. Never raises."""
    with metrics_lock:
        metrics.add_metric(name="BreakerTransition", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="breaker", value=t.breaker)
        metrics.add_metadata(key="from_state", value=t.from_state.value)
        metrics.add_metadata(key="to_state", value=t.to_state.value)
    logger.info("breaker transition", breaker=t.breaker, from_state=t.from_state.value, to_state=t.to_state.value,
                reason=t.reason, version=t.version, changed_by=t.changed_by)
    try:
        history.write(t)
    except Exception as exc:  # noqa: BLE001 - the transition stands; a lost history row is logged
        logger.error("breaker history write failed", breaker=t.breaker, version=t.version, error=str(exc))
    for callback in callbacks:
        try:
            callback(t)
        except Exception:  # noqa: BLE001 - one hook's bug must not break the guarded call
            logger.exception("breaker transition callback failed", breaker=t.breaker, version=t.version)
