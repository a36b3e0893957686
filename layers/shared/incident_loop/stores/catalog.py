"""error_catalog in PostgreSQL: the reviewed entries, versioned; a stored (code, version) never changes.

A global table (no tenant): the entries are the same for every tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb


def add_entries(conn: Connection[Any], entries: Iterable[Mapping[str, Any]]) -> int:
    """Insert the entries whose (code, version) is not stored yet, each with its place in `entries` (what the
    first pattern match goes by); returns how many were new. A stored entry's content never changes: only its
    place, when the file's order changed."""
    new = 0
    for position, e in enumerate(entries):
        row = conn.execute(
            "INSERT INTO error_catalog (code, version, title, category, severity, is_retryable, recovery_mode,"
            " recovery_suggestion, patterns, position) VALUES (%(code)s, %(version)s, %(title)s, %(category)s,"
            " %(severity)s, %(is_retryable)s, %(recovery_mode)s, %(recovery_suggestion)s, %(patterns)s,"
            " %(position)s) ON CONFLICT (code, version) DO UPDATE SET position = EXCLUDED.position"
            " WHERE error_catalog.position IS DISTINCT FROM EXCLUDED.position RETURNING (xmax = 0) AS inserted",
            {**e, "patterns": Jsonb(list(e["patterns"])), "position": position},
        ).fetchone()
        new += bool(row is not None and _inserted(row))
    return new


def _inserted(row: Any) -> bool:
    return bool(row["inserted"] if isinstance(row, Mapping) else row[0])


def entries_in_force(conn: Connection[Any]) -> list[dict[str, Any]]:
    """The newest version of every code, as rows, in the catalog file's order (entries synced before their
    place was kept come last, by code)."""
    return conn.execute(
        "SELECT code, version, title, category, severity, is_retryable, recovery_mode, recovery_suggestion, patterns"
        " FROM (SELECT DISTINCT ON (code) * FROM error_catalog ORDER BY code, version DESC) newest"
        " ORDER BY position NULLS LAST, code"
    ).fetchall()
