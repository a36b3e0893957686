"""`incident-loop sync-catalog`: load the reviewed catalog file into PostgreSQL's error_catalog.

Entries are versioned: a (code, version) already stored is left as it is, so syncing twice changes
nothing and an edited entry needs a new version. The database copy is what persistence matches
against; the file shipped with the layer is the fallback when the database cannot be read.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.catalog.matching import Catalog, CatalogEntry


def sync(conn: Connection[Any], catalog: Catalog) -> int:
    """Insert the entries not stored yet; returns how many were new."""
    new = 0
    for e in catalog.entries:
        row = conn.execute(
            "INSERT INTO error_catalog (code, version, title, category, severity, is_retryable, recovery_mode,"
            " recovery_suggestion, patterns) VALUES (%(code)s, %(version)s, %(title)s, %(category)s, %(severity)s,"
            " %(retry)s, %(mode)s, %(suggestion)s, %(patterns)s) ON CONFLICT (code, version) DO NOTHING"
            " RETURNING code",
            {"code": e.code, "version": e.version, "title": e.title, "category": e.category, "severity": e.severity,
             "retry": e.is_retryable, "mode": e.recovery_mode, "suggestion": e.recovery_suggestion,
             "patterns": Jsonb(list(e.patterns))},
        ).fetchone()
        new += row is not None
    return new


def load(conn: Connection[Any]) -> Catalog | None:
    """The catalog in force: the newest version of every code; None when nothing was synced."""
    rows = conn.execute(
        "SELECT DISTINCT ON (code) code, version, title, category, severity, is_retryable, recovery_mode,"
        " recovery_suggestion, patterns FROM error_catalog ORDER BY code, version DESC"
    ).fetchall()
    if not rows:
        return None
    return Catalog([CatalogEntry(code=r["code"], version=r["version"], title=r["title"], category=r["category"],
                                 severity=r["severity"], is_retryable=r["is_retryable"],
                                 recovery_mode=r["recovery_mode"], recovery_suggestion=r["recovery_suggestion"],
                                 patterns=tuple(r["patterns"])) for r in rows])
