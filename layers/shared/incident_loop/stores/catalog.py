"""error_catalog in PostgreSQL: the reviewed entries, versioned; a stored (code, version) never changes.

A global table (no tenant): the entries are the same for every tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb


def add_entries(conn: Connection[Any], entries: Iterable[Mapping[str, Any]]) -> int:
    """Insert the entries whose (code, version) is not stored yet; returns how many were new."""
    new = 0
    for e in entries:
        row = conn.execute(
            "INSERT INTO error_catalog (code, version, title, category, severity, is_retryable, recovery_mode,"
            " recovery_suggestion, patterns) VALUES (%(code)s, %(version)s, %(title)s, %(category)s, %(severity)s,"
            " %(is_retryable)s, %(recovery_mode)s, %(recovery_suggestion)s, %(patterns)s)"
            " ON CONFLICT (code, version) DO NOTHING RETURNING code",
            {**e, "patterns": Jsonb(list(e["patterns"]))},
        ).fetchone()
        new += row is not None
    return new


def entries_in_force(conn: Connection[Any]) -> list[dict[str, Any]]:
    """The newest version of every code, as rows."""
    return conn.execute(
        "SELECT DISTINCT ON (code) code, version, title, category, severity, is_retryable, recovery_mode,"
        " recovery_suggestion, patterns FROM error_catalog ORDER BY code, version DESC"
    ).fetchall()
