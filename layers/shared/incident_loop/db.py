"""PostgreSQL connections (psycopg 3): one per container, reused while warm, reopened when broken; bounded.

Every function connection carries a statement_timeout and a lock_timeout (settings), so a stalled
database costs a request or a record a bounded wait and a DatabaseTimeout, never the whole invocation.
"""

from __future__ import annotations

import json
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import ConnStatus
from psycopg.rows import dict_row

from incident_loop.settings import DEFAULT_DATABASE_URL, Settings, get_settings


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the caller decides whether to retry or fail the record."""


class DatabaseTimeout(DatabaseUnavailable):
    """A statement ran past its statement_timeout or waited past its lock_timeout (a stalled database)."""


class DatabaseLockWait(DatabaseTimeout):
    """A lock was waited for past lock_timeout: another transaction holds what this one needs (contention on one
    tenant's keys, say). The database is well; work that needs other locks goes through."""


class DatabaseConflict(DatabaseUnavailable):
    """The transaction lost to a concurrent one (a deadlock, a serialization failure) and was rolled
    back: nothing is wrong with the database, and the work succeeds when tried again, best alone."""


class ValueTooLarge(ValueError):
    """PostgreSQL refused a value as larger than it can store or index (a program limit, SQLSTATE 54):
    the input's fault, so trying again never helps."""


def conninfo(settings: Settings | None = None) -> str:
    """The connection string: DATABASE_URL locally; in AWS the secret's credentials and the proxy host."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    if settings.db_secret_arn:
        # Imported here: only deployed functions read secrets, and Parameters caches the value.
        from aws_lambda_powertools.utilities import parameters

        secret: dict[str, Any] = json.loads(parameters.get_secret(settings.db_secret_arn, max_age=300))
        return psycopg.conninfo.make_conninfo(
            host=settings.db_proxy_endpoint or secret["host"],
            port=secret.get("port", 5432),
            dbname=settings.db_name or secret.get("dbname"),
            user=secret["username"],
            password=secret["password"],
            sslmode="require",
        )
    return DEFAULT_DATABASE_URL


def connect(dsn: str | None = None, *, autocommit: bool = False, connect_timeout_s: int | None = None,
            bounded: bool = False, statement_timeout_ms: int | None = None,
            lock_timeout_ms: int | None = None) -> psycopg.Connection[dict[str, Any]]:
    """A new connection with dict rows; server-side prepares off so RDS Proxy / PgBouncer work.

    `bounded` (the functions' connections) gives the session the settings' statement_timeout and
    lock_timeout (or the tighter ones given), and a tcp_user_timeout: a network that silently drops
    packets of an established connection (a black hole after connect) breaks it instead of holding
    the caller. Migrations and the CLI's bulk loads connect unbounded.
    """
    settings = get_settings()
    statement_ms = statement_timeout_ms or settings.db_statement_timeout_ms
    lock_ms = lock_timeout_ms or settings.db_lock_timeout_ms
    bounds: dict[str, Any] = {}
    if bounded:
        bounds["tcp_user_timeout"] = statement_ms
        if settings.db_session_options:
            bounds["options"] = f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"
    try:
        return psycopg.connect(
            dsn or conninfo(settings),
            autocommit=autocommit,
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=connect_timeout_s or settings.db_connect_timeout_s,
            application_name="incident-loop",
            **bounds,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc)) from exc


def alive(conn: psycopg.Connection[Any]) -> bool:
    """False when an idle connection is gone: closed, broken, or ended by the server while idle.

    An idle connection has nothing to read unless the server ended it (a killed backend, a restart,
    a failover), so a readable socket is read to find out; a healthy one costs one poll, no round trip.
    """
    if conn.closed or conn.broken:
        return False
    try:
        for _ in range(3):
            if not select.select([conn.fileno()], [], [], 0)[0]:
                return True
            conn.pgconn.consume_input()
    except (OSError, ValueError, psycopg.Error):
        return False
    return conn.pgconn.status == ConnStatus.OK


_conn: psycopg.Connection[dict[str, Any]] | None = None


def get_connection() -> psycopg.Connection[dict[str, Any]]:
    """The container's connection, reopened if the previous one is closed, broken or ended by the server."""
    global _conn
    if _conn is None or not alive(_conn):
        reset_connection()
        _conn = connect(bounded=True)
    return _conn


def reset_connection() -> None:
    """Close and forget the container's connection (tests, settings changes)."""
    global _conn
    if _conn is not None and not _conn.closed:
        _conn.close()
    _conn = None


class ConnectionPool:
    """Idle bounded connections for worker threads, reused across warm invocations, per database; their
    statement and lock bounds (the settings', or tighter ones given) are set when they connect.

    Each taker has its connection to itself for as long as it holds it; a connection the server
    ended while it sat idle is dropped, never handed out.
    """

    def __init__(self, *, connect_timeout_s: int | None = None, statement_timeout_ms: int | None = None,
                 lock_timeout_ms: int | None = None) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._bounds = {"statement_timeout_ms": statement_timeout_ms, "lock_timeout_ms": lock_timeout_ms}
        self._idle: dict[str, list[psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()

    def take(self, dsn: str) -> psycopg.Connection[Any]:
        with self._lock:
            idle = self._idle.setdefault(dsn, [])
            while idle:
                conn = idle.pop()
                if alive(conn):
                    return conn
                conn.close()
        return connect(dsn, connect_timeout_s=self._connect_timeout_s, bounded=True, **self._bounds)

    def give_back(self, dsn: str, conn: psycopg.Connection[Any]) -> None:
        if not alive(conn):
            conn.close()
            return
        with self._lock:
            self._idle.setdefault(dsn, []).append(conn)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()


def set_tenant(conn: psycopg.Connection[Any], tenant_id: str | None) -> None:
    """Scope the rest of the current transaction to one tenant (row-level security's app.tenant_id).

    None scopes it to no tenant: tenant tables then show no rows and refuse every insert, which
    is what a transaction touching only global tables (breakers, canary reports) should see.
    """
    conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id or "",))


def _scope(conn: psycopg.Connection[Any], tenant_id: str | None, statement_timeout_ms: int | None,
           lock_timeout_ms: int | None) -> None:
    """The tenant and the transaction's bounds, in one round trip (SET LOCAL semantics).

    Set per transaction as well as at connect: a transaction-pooling proxy may drop startup options,
    and a caller with a tighter budget (failure persistence) narrows them for its own transaction only.
    """
    settings = get_settings()
    conn.execute(
        "SELECT set_config('app.tenant_id', %(tenant)s, true), set_config('statement_timeout', %(st)s, true),"
        " set_config('lock_timeout', %(lt)s, true)",
        {"tenant": tenant_id or "", "st": str(statement_timeout_ms or settings.db_statement_timeout_ms),
         "lt": str(lock_timeout_ms or settings.db_lock_timeout_ms)},
    )


@contextmanager
def _pipelined(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """BEGIN ... COMMIT in pipeline mode, synced once, at the end.

    psycopg's own transaction() syncs the pipeline at each of its boundaries (and so does the BEGIN it
    sends by itself when the connection does not autocommit), which would cost the round trips
    pipelining saves: the connection autocommits for the block, and the block sends BEGIN and COMMIT
    itself. Whatever fails (a statement, or the code between them) leaves no transaction open.
    """
    autocommit = conn.autocommit
    conn.autocommit = True  # the connection is idle here: no round trip
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            yield
            conn.execute("COMMIT")
    except BaseException:
        if not (conn.closed or conn.broken) and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()  # the block failed before COMMIT, or COMMIT was skipped after a failed statement
        raise
    finally:
        if not (conn.closed or conn.broken):
            conn.autocommit = autocommit


@contextmanager
def savepoint(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A savepoint in the caller's transaction: what fails in the block is undone, the rest stays.

    Not in a pipelined transaction (db.transaction(pipelined=True)): there psycopg cannot tell that a
    transaction is open (the server says so only at a sync), and the block needs none, since a failure
    anywhere in such a transaction rolls all of it back.
    """
    if conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
        yield
        return
    with conn.transaction():
        yield


def unavailable(exc: psycopg.OperationalError) -> DatabaseUnavailable | ValueTooLarge:
    """The domain error for a driver error: a timeout (cancelled statement, lock not granted), a lost race
    (deadlock, serialization failure), a value too large to store, or unreachable."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return DatabaseLockWait(str(exc))
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseTimeout(str(exc))
    state = exc.sqlstate or ""
    if state.startswith("40"):  # transaction rollback: serialization failure, deadlock
        return DatabaseConflict(str(exc))
    if state.startswith("54"):  # program limit exceeded: an index row, a statement too large
        return ValueTooLarge(str(exc))
    return DatabaseUnavailable(str(exc))


@contextmanager
def transaction(
    conn: psycopg.Connection[Any] | None = None, *, tenant_id: str | None, statement_timeout_ms: int | None = None,
    lock_timeout_ms: int | None = None, pipelined: bool = False,
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction on the given (or the container's) connection, scoped to `tenant_id` and bounded.

    The tenant is set in the same transaction (SET LOCAL semantics), so it ends with it and a
    reused connection never carries one tenant's scope into the next. Every statement is bounded by
    the settings' statement_timeout and lock_timeout (or the tighter ones given); one that runs past
    them raises DatabaseTimeout, a lost connection DatabaseUnavailable, and a broken connection is dropped.

    `pipelined` runs it in psycopg's pipeline mode: a statement whose rows nobody fetches is sent with
    the next one that is fetched (BEGIN and the scope with the first read, COMMIT with the sync at the
    end), in order, so a batch's writes cost no round trip of their own. An error surfaces at the next
    fetch or at the end, and rolls the whole transaction back as usual.
    """
    conn = conn or get_connection()
    try:
        # A connection a bare statement left in a transaction cannot switch to autocommit: its block
        # nests in that transaction as a savepoint, as without pipelining.
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with _pipelined(conn) if pipelined and idle else conn.transaction():
            _scope(conn, tenant_id, statement_timeout_ms, lock_timeout_ms)
            yield conn
    except psycopg.OperationalError as exc:
        if conn is _conn and (conn.broken or conn.closed):
            reset_connection()
        raise unavailable(exc) from exc
