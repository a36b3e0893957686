"""Plain-SQL migrations: numbered files applied in order, under an advisory lock, with checksums.

Each file runs in one transaction with its record in schema_migrations, except a file whose first line is
NO_TRANSACTION: one statement that may not run in a transaction block, above all `CREATE INDEX CONCURRENTLY IF
NOT EXISTS` (an index on a table that is written to, built without blocking its writers). It runs by itself and is
recorded once it has succeeded; a concurrent build that failed (a lock waited for too long, a duplicate for a
unique index) leaves its index INVALID and the run fails, and the next run drops that index before building it
again. Write it with IF NOT EXISTS: a run that dies between the statement and its record runs it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from incident_loop.db import connect
from incident_loop.observability import logger
from incident_loop.settings import get_settings

# Any constant works; it only has to be the same for every runner of this schema.
ADVISORY_LOCK_KEY = 0x1C1DE47
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
NO_TRANSACTION = "-- migrate: no-transaction"


class MigrationError(RuntimeError):
    """The migration chain is broken or an applied migration was edited."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def transactional(self) -> bool:
        """False for a file whose first line is NO_TRANSACTION (see the module's docstring)."""
        return self.sql.lstrip().split("\n", 1)[0].strip() != NO_TRANSACTION


def default_dir() -> Path:
    """MIGRATIONS_DIR, or the repository's migrations/ folder (layers/shared/incident_loop -> repo root)."""
    configured = get_settings().migrations_dir
    return Path(configured) if configured else Path(__file__).resolve().parents[3] / "migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration in order; refuses gaps, duplicates and misnamed .sql files."""
    directory = directory or default_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations folder not found: {directory}")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text())
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration chain has a gap: versions {versions}")
    return [found[v] for v in versions]


def _applied(conn: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version INTEGER PRIMARY KEY,
               name TEXT NOT NULL,
               checksum TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
    )
    rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    return {row["version"]: row for row in rows}


# With a deadline (the Migrations custom resource): how long a migration waits for a table's lock before it lets
# go and tries again (waiting, it queues every later reader and writer of that table behind it), and how much
# time is kept to answer CloudFormation (killed at its timeout unanswered, the stack waited out ServiceTimeout).
LOCK_TIMEOUT_MS = 5_000
ANSWER_RESERVE_MS = 15_000
RETRY_PAUSE_S = 1.0


def _left(time_left_ms: Callable[[], int] | None, what: str) -> int | None:
    """The milliseconds a statement may take now (None: no deadline); MigrationError when none are left."""
    if time_left_ms is None:
        return None
    budget = time_left_ms() - ANSWER_RESERVE_MS
    if budget <= 0:
        raise MigrationError(f"{what}: no time left in this run; deploy again when the tables are quieter")
    return budget


def _lock(conn: psycopg.Connection[Any], time_left_ms: Callable[[], int] | None) -> None:
    """The advisory lock every runner of the migrations takes; with a deadline, given up before it."""
    if time_left_ms is None:
        conn.execute("SELECT pg_advisory_lock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
        return
    while not conn.execute("SELECT pg_try_advisory_lock(%(key)s) AS ok", {"key": ADVISORY_LOCK_KEY}).fetchone()["ok"]:
        _left(time_left_ms, "another run of the migrations holds their lock")
        time.sleep(RETRY_PAUSE_S)


_BOUNDS_SQL = ("SELECT set_config('lock_timeout', %(lock)s, {local}),"
               " set_config('statement_timeout', %(statement)s, {local})")
_RECORD_SQL = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)"
# The index a concurrent build names and its table: CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON
# [ONLY] [schema.]table (an index lives in its table's schema).
_IDENTIFIER = r'(?:"[^"]+"|\w+)'
_CONCURRENT_INDEX = re.compile(rf"\bINDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?({_IDENTIFIER})\s+ON\s+"
                               rf"(?:ONLY\s+)?({_IDENTIFIER}(?:\.{_IDENTIFIER})?)", re.I)
_INDEX_SQL = """SELECT format('%%I.%%I', n.nspname, c.relname) AS qualified, i.indisvalid AS valid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = %(name)s AND i.indrelid = to_regclass(%(table)s)"""


def _bounds(budget: int | None, lock_ms: int | None = None) -> dict[str, str]:
    lock = LOCK_TIMEOUT_MS if lock_ms is None else lock_ms
    return {} if budget is None else {"lock": str(min(lock, budget)), "statement": str(budget)}


def _apply_one(conn: psycopg.Connection[Any], migration: Migration, time_left_ms: Callable[[], int] | None) -> None:
    """One migration and its record, in one transaction (or, marked NO_TRANSACTION, by itself and then its record);
    with a deadline, each lock waited for at most LOCK_TIMEOUT_MS (then released, and tried again while time is
    left) and no statement past the deadline."""
    while True:
        budget = _left(time_left_ms, migration.filename)
        if not migration.transactional:
            _apply_alone(conn, migration, budget)
            return
        try:
            with conn.transaction():
                if budget is not None:
                    conn.execute(_BOUNDS_SQL.format(local="true"), _bounds(budget))
                conn.execute(migration.sql.encode())
                conn.execute(_RECORD_SQL, _record(migration))
            return
        except psycopg.errors.LockNotAvailable:
            if budget is None:  # no deadline of ours: the session's own lock_timeout ended the wait
                raise
            logger.warning("migration waited too long for a lock; trying again", migration=migration.filename)
            time.sleep(RETRY_PAUSE_S)


def _record(migration: Migration) -> dict[str, Any]:
    return {"version": migration.version, "name": migration.name, "checksum": migration.checksum}


def _statements(sql: str) -> int:
    """How many statements the SQL holds (comment lines left out; a ';' inside a string would count too)."""
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return sum(1 for part in code.split(";") if part.strip())


def _index(conn: psycopg.Connection[Any], sql: str) -> tuple[str, bool] | None:
    """The index a concurrent build in `sql` names, if it exists: (its qualified name, whether it is valid)."""
    named = _CONCURRENT_INDEX.search(sql)
    if named is None:
        return None
    name, table = named.groups()  # unquoted, a name is folded to lower case; quoted, kept as written
    row = conn.execute(_INDEX_SQL, {"name": name[1:-1] if name.startswith('"') else name.lower(),
                                    "table": table}).fetchone()
    return None if row is None else (row["qualified"], bool(row["valid"]))


def _apply_alone(conn: psycopg.Connection[Any], migration: Migration, budget: int | None) -> None:
    """A NO_TRANSACTION migration: its one statement outside any transaction block (autocommit), then its record.

    The index it builds, left INVALID by a build that failed before, is dropped first (IF NOT EXISTS would skip it);
    one it leaves INVALID fails the run unrecorded. With a deadline, every wait (a concurrent build waits for the
    table's writers and old snapshots, which PostgreSQL counts as lock waits) may take the time left, not
    LOCK_TIMEOUT_MS: a build stopped late would leave an INVALID index to be built again from the start."""
    if _statements(migration.sql) != 1:
        raise MigrationError(f"{migration.filename} is marked {NO_TRANSACTION!r}: it must hold one statement")
    if budget is not None:
        conn.execute(_BOUNDS_SQL.format(local="false"), _bounds(budget, lock_ms=budget))
    try:
        left = _index(conn, migration.sql)
        if left is not None and not left[1]:
            logger.warning("dropping an index a failed concurrent build left", index=left[0],
                           migration=migration.filename)
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {left[0]}")
        conn.execute(migration.sql.encode())
        built = _index(conn, migration.sql)
        if built is not None and not built[1]:
            raise MigrationError(f"{migration.filename}: index {built[0]} is INVALID after its build; the next run "
                                 "drops it and builds it again")
    finally:
        if budget is not None and not conn.broken:
            with contextlib.suppress(psycopg.Error):  # the statement's own error, if any, is the one to see
                conn.execute("RESET lock_timeout")
                conn.execute("RESET statement_timeout")
    conn.execute(_RECORD_SQL, _record(migration))


def apply(dsn: str | None = None, directory: Path | None = None,
          time_left_ms: Callable[[], int] | None = None) -> list[str]:
    """Apply every pending migration; returns the file names applied (empty when up to date). With
    `time_left_ms` (the custom resource's clock) every wait is bounded and MigrationError comes in time to answer."""
    migrations = discover(directory)
    done: list[str] = []
    with connect(dsn, autocommit=True) as conn:
        _lock(conn, time_left_ms)
        try:
            applied = _applied(conn)
            for migration in migrations:
                row = applied.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"{migration.filename} was edited after it was applied "
                            f"(recorded checksum {row['checksum'][:12]}, file {migration.checksum[:12]}); "
                            "add a new migration instead"
                        )
                    continue
                _apply_one(conn, migration, time_left_ms)
                logger.info("migration applied", migration=migration.filename)
                done.append(migration.filename)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
    return done
