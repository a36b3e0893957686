"""breaker_history in PostgreSQL (migration 0005): one row per transition, idempotent on (name, version).

A global table (no tenant, no row-level security), written on its own autocommit connection so a
transition never waits on, or rolls back with, the caller's transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from incident_loop.breaker.history import as_row
from incident_loop.breaker.state import Transition
from incident_loop.db import DatabaseUnavailable, connect

# Candidate setting: a history write must not hold up the caller of the transition for long.
STATEMENT_TIMEOUT_MS = 2000
# The write runs inline, in the call the breaker guards: at most this long connecting (libpq's least), and
# after a failure no attempt for BACKOFF_S (each transition waited out the 5 s connect timeout, longer
# than catalog-persist's whole 2 s budget). A row not written is logged; the transition stands.
CONNECT_TIMEOUT_S = 2
BACKOFF_S = 30.0


class HistoryUnavailable(RuntimeError):
    """breaker_history failed lately: the write is not tried until the back-off has passed."""

INSERT = """
INSERT INTO breaker_history (breaker_name, from_state, to_state, version, reason, changed_by, details, created_at)
VALUES (%(breaker_name)s, %(from_state)s, %(to_state)s, %(version)s, %(reason)s, %(changed_by)s, %(details)s,
        %(created_at)s)
ON CONFLICT (breaker_name, version) DO NOTHING
"""

RECENT = """
SELECT breaker_name, from_state, to_state, version, reason, changed_by, details, created_at
FROM breaker_history WHERE breaker_name = %(name)s ORDER BY created_at DESC, version DESC LIMIT %(limit)s
"""


class PostgresHistory:
    """The breaker's HistoryWriter on breaker_history (connection opened on first write, reopened when broken)."""

    def __init__(self, dsn: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one connection, one statement at a time
        self._clock = clock
        self._down_until = 0.0

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = connect(self._dsn, autocommit=True, connect_timeout_s=CONNECT_TIMEOUT_S)
            conn.execute("SELECT set_config('statement_timeout', %(ms)s, false)", {"ms": str(STATEMENT_TIMEOUT_MS)})
            self._conn = conn
        return self._conn

    def write(self, transition: Transition) -> None:
        row = as_row(transition) | {"details": Jsonb(transition.details)}
        with self._lock:
            if self._clock() < self._down_until:
                raise HistoryUnavailable(f"breaker_history failed in the last {BACKOFF_S:.0f} s; not tried")
            try:
                self._connection().execute(INSERT, row)
            except (psycopg.OperationalError, DatabaseUnavailable):
                self._down_until = self._clock() + BACKOFF_S
                self.close_connection()
                raise

    def close_connection(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None


def recent(conn: psycopg.Connection[Any], name: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest transitions of one breaker, newest first."""
    return list(conn.execute(RECENT, {"name": name, "limit": limit}).fetchall())
