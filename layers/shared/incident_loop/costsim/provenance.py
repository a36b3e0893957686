"""costsim_provenance: one row per tenant and distinct simulated plan (input hash), written live or backfilled.

The key is (tenant_id, input_hash): whether a plan was recorded before says nothing about what
other tenants simulated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.costsim.models import Plan
from incident_loop.db import set_tenant

COLUMNS = ("input_hash", "tenant_id", "plan", "v1_version", "v1_cost_usd", "v2_version", "v2_cost_usd", "drift",
           "served", "source", "created_at")


def record(
    conn: Connection[Any],
    *,
    tenant_id: str,
    plan: Plan,
    v1: Any,
    v2: Any | None,
    drift: float | None,
    served: str,
) -> bool:
    """Store the simulation once per (tenant, input hash); False when the tenant already recorded that plan."""
    row = conn.execute(
        "INSERT INTO costsim_provenance (input_hash, tenant_id, plan, v1_version, v1_cost_usd, v2_version,"
        " v2_cost_usd, drift, served) VALUES (%(hash)s, %(tenant)s, %(plan)s, %(v1v)s, %(v1c)s, %(v2v)s, %(v2c)s,"
        " %(drift)s, %(served)s) ON CONFLICT (tenant_id, input_hash) DO NOTHING RETURNING id",
        {"hash": plan.input_hash(), "tenant": tenant_id, "plan": Jsonb(plan.model_dump(mode="json")),
         "v1v": v1.version, "v1c": v1.total_usd, "v2v": v2.version if v2 else None,
         "v2c": v2.total_usd if v2 else None, "drift": drift, "served": served},
    ).fetchone()
    return row is not None


def _by_tenant(items: Iterable[tuple[Any, ...]], at: int) -> dict[str, list[tuple[Any, ...]]]:
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for item in items:
        groups.setdefault(item[at], []).append(item)
    return groups


def insert_batch(conn: Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY a batch into a staging table, then insert what is new; returns the rows inserted.

    Rows are tuples in COLUMNS order (plan as JSON text). Duplicates, within the batch or against
    the table, are skipped by the unique (tenant_id, input_hash). A backfill batch may hold many
    tenants: each tenant's rows go in under that tenant's scope (row-level security), all in the
    caller's transaction.
    """
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS provenance_staging (input_hash TEXT, tenant_id TEXT, plan JSONB,"
        " v1_version TEXT, v1_cost_usd DOUBLE PRECISION, v2_version TEXT, v2_cost_usd DOUBLE PRECISION,"
        " drift DOUBLE PRECISION, served TEXT, source TEXT, created_at TIMESTAMPTZ) ON COMMIT DELETE ROWS"
    )
    inserted = 0
    with conn.cursor() as cur:
        for tenant_id, group in _by_tenant(rows, COLUMNS.index("tenant_id")).items():
            with cur.copy(f"COPY provenance_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in group:
                    copy.write_row(row)
            set_tenant(conn, tenant_id)
            cur.execute(
                f"INSERT INTO costsim_provenance ({', '.join(COLUMNS)})"
                f" SELECT {', '.join(COLUMNS)} FROM provenance_staging"
                " ON CONFLICT (tenant_id, input_hash) DO NOTHING"
            )
            inserted += cur.rowcount
            cur.execute("TRUNCATE provenance_staging")
    return inserted


def stored(conn: Connection[Any], keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The stored rows for these (tenant_id, input_hash) keys (for --verify and --dry-run).

    Tenant by tenant, each under its own scope, in the caller's transaction.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for tenant_id, group in _by_tenant(keys, 0).items():
        set_tenant(conn, tenant_id)
        rows = conn.execute(
            "SELECT input_hash, tenant_id, v1_cost_usd, v2_cost_usd, drift FROM costsim_provenance"
            " WHERE tenant_id = %(t)s AND input_hash = ANY(%(h)s)",
            {"t": tenant_id, "h": [h for _, h in group]},
        ).fetchall()
        found.update({(r["tenant_id"], r["input_hash"]): r for r in rows})
    return found
