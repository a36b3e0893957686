"""CostSim in PostgreSQL: provenance (per tenant), canary reports, the drift of the last hour, CostSim incidents.

costsim_provenance is keyed by (tenant_id, input_hash): whether a plan was recorded before says nothing
about what other tenants simulated. Canary reports and CostSim incidents are global tables. Every
function runs in the caller's transaction, which has set the tenant (incident_loop.db.transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.errors import UniqueViolation
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from incident_loop.db import set_tenant

COLUMNS = ("input_hash", "tenant_id", "plan", "v1_version", "v1_cost_usd", "v2_version", "v2_cost_usd", "drift",
           "served", "source", "created_at")

# --------------------------------------------------------------------------- provenance


def record_provenance(conn: Connection[Any], *, input_hash: str, tenant_id: str, plan: dict[str, Any],
                      v1_version: str, v1_cost_usd: float, v2_version: str | None, v2_cost_usd: float | None,
                      drift: float | None, served: str) -> bool:
    """Store one simulation once per (tenant, input hash); False when the tenant already recorded that plan."""
    row = conn.execute(
        "INSERT INTO costsim_provenance (input_hash, tenant_id, plan, v1_version, v1_cost_usd, v2_version,"
        " v2_cost_usd, drift, served) VALUES (%(hash)s, %(tenant)s, %(plan)s, %(v1v)s, %(v1c)s, %(v2v)s, %(v2c)s,"
        " %(drift)s, %(served)s) ON CONFLICT (tenant_id, input_hash) DO NOTHING RETURNING id",
        {"hash": input_hash, "tenant": tenant_id, "plan": Jsonb(plan), "v1v": v1_version, "v1c": v1_cost_usd,
         "v2v": v2_version, "v2c": v2_cost_usd, "drift": drift, "served": served},
    ).fetchone()
    return row is not None


def _by_tenant(items: Iterable[tuple[Any, ...]], at: int) -> dict[str, list[tuple[Any, ...]]]:
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for item in items:
        groups.setdefault(item[at], []).append(item)
    return groups


def writes_every_tenant(conn: Connection[Any]) -> bool:
    """Whether this connection's role writes and reads costsim_provenance past row-level security (a
    superuser, a BYPASSRLS role, or the table's owner when RLS is not forced on it): only such a role
    may COPY straight into the table, and see every tenant's keys to know a batch is new."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT r.rolsuper OR r.rolbypassrls OR (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)"
            " FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'costsim_provenance'::regclass"
        ).fetchone()
    return bool(row and row[0])


def _any_stored(conn: Connection[Any], rows: list[tuple[Any, ...]]) -> bool:
    with conn.cursor(row_factory=tuple_row) as cur:
        found = cur.execute(
            "SELECT EXISTS (SELECT 1 FROM unnest(%(t)s::text[], %(h)s::text[]) AS k(t, h)"
            " JOIN costsim_provenance p ON p.tenant_id = k.t AND p.input_hash = k.h)",
            {"t": [r[1] for r in rows], "h": [r[0] for r in rows]},
        ).fetchone()
    return bool(found and found[0])


def copy_new(conn: Connection[Any], rows: Iterable[tuple[Any, ...]], *,
             probe: bool = True) -> tuple[list[tuple[Any, ...]], bool]:
    """COPY the rows straight into the table, all or none, as they come (the caller's role writes every
    tenant's rows: writes_every_tenant()): no staging, no second pass. Returns every row taken from
    `rows`, and whether they went in. They did not, and nothing was written, when a key is stored already
    or repeats among them: found by the probe (one index lookup per row, before the COPY), or by the
    unique index during the COPY (rolled back to a savepoint). The caller stages them instead.
    """
    source: Iterator[tuple[Any, ...]]
    if probe:
        kept, source = list(rows), iter(())
        if _any_stored(conn, kept):
            return kept, False
    else:
        kept, source = [], iter(rows)  # kept as the COPY takes them
    try:
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f"COPY costsim_provenance ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in kept:
                copy.write_row(row)
            for row in source:
                kept.append(row)
                copy.write_row(row)
    except UniqueViolation:
        kept.extend(source)  # what the COPY had not taken yet when the index objected
        return kept, False
    return kept, True


def insert_batch(conn: Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY a batch into a staging table, then insert what is new; returns the rows inserted.

    Rows are tuples in COLUMNS order (plan as JSON text). Duplicates, within the batch or against
    the table, are skipped by the unique (tenant_id, input_hash). A backfill batch may hold many
    tenants: each tenant's rows go in under that tenant's scope (row-level security), all in the
    caller's transaction.
    """
    rows = list(rows)
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS provenance_staging (input_hash TEXT, tenant_id TEXT, plan JSONB,"
        " v1_version TEXT, v1_cost_usd DOUBLE PRECISION, v2_version TEXT, v2_cost_usd DOUBLE PRECISION,"
        " drift DOUBLE PRECISION, served TEXT, source TEXT, created_at TIMESTAMPTZ) ON COMMIT DELETE ROWS"
    )
    inserted = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY provenance_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        for tenant_id in {row[1] for row in rows}:  # one COPY for the batch, one INSERT per tenant
            set_tenant(conn, tenant_id)
            cur.execute(
                f"INSERT INTO costsim_provenance ({', '.join(COLUMNS)})"
                f" SELECT {', '.join(COLUMNS)} FROM provenance_staging WHERE tenant_id = %(t)s"
                " ON CONFLICT (tenant_id, input_hash) DO NOTHING", {"t": tenant_id}
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


def drift_last_hour(conn: Connection[Any]) -> dict[str, Any] | None:
    """p95 and count of the last hour's drift over every tenant's simulations.

    Through the owner's aggregate-only costsim_drift_last_hour() (migration 0009): row-level security
    hides other tenants' rows from the functions' role.
    """
    return conn.execute("SELECT p95, n FROM costsim_drift_last_hour()").fetchone()


# --------------------------------------------------------------------------- canary reports


def insert_canary_report(conn: Connection[Any], report: dict[str, Any], plans: list[dict[str, Any]]) -> datetime | None:
    """Store one canary report (its per-plan rows as details); its created_at."""
    created = conn.execute(
        "INSERT INTO costsim_canary_reports (id, v1_version, v2_version, plans, drift_p50, drift_p95, drift_max,"
        " passed, threshold, details) VALUES (%(id)s, %(v1_version)s, %(v2_version)s, %(plans)s, %(drift_p50)s,"
        " %(drift_p95)s, %(drift_max)s, %(passed)s, %(threshold)s, %(details)s) RETURNING created_at",
        {**report, "details": Jsonb({"plans": plans})},
    ).fetchone()
    return created["created_at"] if created else None


def canary_reports(conn: Connection[Any], limit: int = 20) -> list[dict[str, Any]]:
    """The latest canary reports, newest first, each with its per-plan rows as details."""
    rows = conn.execute(
        "SELECT id, v1_version, v2_version, plans, drift_p50, drift_p95, drift_max, passed, threshold, details,"
        " created_at FROM costsim_canary_reports ORDER BY created_at DESC, id LIMIT %(n)s",
        {"n": limit},
    ).fetchall()
    return [{**r, "details": r["details"]["plans"]} for r in rows]


# --------------------------------------------------------------------------- CostSim incidents


def open_incident(conn: Connection[Any], *, incident_id: str, breaker: str, version: int, reason: str,
                  drift_p95: float | None, loop_incident_key: str, opened_at: datetime,
                  trip_id: str | None = None, resolved_at: datetime | None = None) -> bool:
    """Open the incident of one trip (resolved at once, for a trip filed when it is over); False when that trip
    (breaker, trip id; or, for a trip without an id, breaker and version) already has one."""
    created = conn.execute(
        "INSERT INTO costsim_incidents (id, breaker_name, breaker_version, reason, drift_p95, loop_incident_key,"
        " opened_at, trip_id, resolved_at) VALUES (%(id)s, %(b)s, %(v)s, %(r)s, %(d)s, %(k)s, %(at)s, %(trip)s,"
        " %(resolved)s) ON CONFLICT DO NOTHING RETURNING id",
        {"id": incident_id, "b": breaker, "v": version, "r": reason, "d": drift_p95, "k": loop_incident_key,
         "at": opened_at, "trip": trip_id, "resolved": resolved_at},
    ).fetchone()
    return created is not None


def resolve_incidents(conn: Connection[Any], breaker: str, at: datetime) -> list[datetime]:
    """Resolve the breaker's open incidents; when each was opened."""
    rows = conn.execute(
        "UPDATE costsim_incidents SET resolved_at = %(at)s WHERE breaker_name = %(b)s AND resolved_at IS NULL"
        " RETURNING opened_at", {"at": at, "b": breaker},
    ).fetchall()
    return [r["opened_at"] for r in rows]


def last_incident(conn: Connection[Any], breaker: str) -> dict[str, Any] | None:
    """The breaker's latest incident, open or resolved."""
    return conn.execute(
        "SELECT id, breaker_version, reason, drift_p95, loop_incident_key, opened_at, resolved_at"
        " FROM costsim_incidents WHERE breaker_name = %(b)s ORDER BY opened_at DESC LIMIT 1", {"b": breaker},
    ).fetchone()
