"""costsim_provenance: one row per distinct simulated plan (input hash), written live or backfilled."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.costsim.models import Plan

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
    """Store the simulation once per input hash; False when that plan was already recorded."""
    row = conn.execute(
        "INSERT INTO costsim_provenance (input_hash, tenant_id, plan, v1_version, v1_cost_usd, v2_version,"
        " v2_cost_usd, drift, served) VALUES (%(hash)s, %(tenant)s, %(plan)s, %(v1v)s, %(v1c)s, %(v2v)s, %(v2c)s,"
        " %(drift)s, %(served)s) ON CONFLICT (input_hash) DO NOTHING RETURNING id",
        {"hash": plan.input_hash(), "tenant": tenant_id, "plan": Jsonb(plan.model_dump(mode="json")),
         "v1v": v1.version, "v1c": v1.total_usd, "v2v": v2.version if v2 else None,
         "v2c": v2.total_usd if v2 else None, "drift": drift, "served": served},
    ).fetchone()
    return row is not None


def insert_batch(conn: Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY a batch into a staging table, then insert what is new; returns the rows inserted.

    Rows are tuples in COLUMNS order (plan as JSON text). Duplicates, within the batch or against
    the table, are skipped by the unique input hash.
    """
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS provenance_staging (input_hash TEXT, tenant_id TEXT, plan JSONB,"
        " v1_version TEXT, v1_cost_usd DOUBLE PRECISION, v2_version TEXT, v2_cost_usd DOUBLE PRECISION,"
        " drift DOUBLE PRECISION, served TEXT, source TEXT, created_at TIMESTAMPTZ) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy(f"COPY provenance_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO costsim_provenance ({', '.join(COLUMNS)})"
            f" SELECT {', '.join(COLUMNS)} FROM provenance_staging ON CONFLICT (input_hash) DO NOTHING"
        )
        return cur.rowcount


def stored(conn: Connection[Any], hashes: list[str]) -> dict[str, dict[str, Any]]:
    """The stored rows for these input hashes (for --verify)."""
    rows = conn.execute(
        "SELECT input_hash, tenant_id, v1_cost_usd, v2_cost_usd, drift FROM costsim_provenance"
        " WHERE input_hash = ANY(%(h)s)",
        {"h": hashes},
    ).fetchall()
    return {r["input_hash"]: r for r in rows}
