"""`incident-loop sync-catalog`: load the reviewed catalog file into PostgreSQL's error_catalog, and read it back.

Entries are versioned: a (code, version) already stored is left as it is, so syncing twice changes
nothing and an edited entry needs a new version. The database copy is what persistence matches
against; the file shipped with the layer is the fallback when the database cannot be read.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from psycopg import Connection

from incident_loop.catalog.lookup import Catalog, CatalogEntry
from incident_loop.stores.catalog import add_entries, entries_in_force


def sync(conn: Connection[Any], catalog: Catalog) -> int:
    """Insert the entries not stored yet; returns how many were new."""
    return add_entries(conn, (asdict(e) for e in catalog.entries))


def load(conn: Connection[Any]) -> Catalog | None:
    """The catalog in force: the newest version of every code; None when nothing was synced."""
    rows = entries_in_force(conn)
    if not rows:
        return None
    return Catalog([CatalogEntry(**{**r, "patterns": tuple(r["patterns"])}) for r in rows])
