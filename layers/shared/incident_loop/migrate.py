"""Plain-SQL migrations: numbered files applied in order, under an advisory lock, with checksums."""

from __future__ import annotations

import hashlib
import re
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


def apply(dsn: str | None = None, directory: Path | None = None) -> list[str]:
    """Apply every pending migration; returns the file names applied (empty when up to date)."""
    migrations = discover(directory)
    done: list[str] = []
    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
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
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%(version)s, %(name)s, %(checksum)s)",
                        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
                    )
                logger.info("migration applied", migration=migration.filename)
                done.append(migration.filename)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
    return done
