"""failure_matches: writing a failure once, the tenant-scoped queries of the recovery API, and retention.

Every query names tenant_id first, so each one is served by the seed's tenant indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.failures import FailureRecord

COLUMNS = (
    "id, run_id, tenant_id, error_code, error_message, catalog_entry_id, match_type, match_confidence, category,"
    " severity, is_retryable, recovery_mode, recovery_suggestion, recovery_attempted, recovery_succeeded,"
    " recovered_at, recovered_by, recovery_notes, skill_id, step_index, context_json, created_at, updated_at"
)


def insert(conn: Connection[Any], failure: FailureRecord) -> bool:
    """Write the failure once (a replayed record with the same id changes nothing)."""
    row = conn.execute(
        "INSERT INTO failure_matches (id, run_id, tenant_id, error_code, error_message, catalog_entry_id, match_type,"
        " match_confidence, category, severity, is_retryable, recovery_mode, recovery_suggestion, skill_id,"
        " step_index, context_json, created_at) VALUES (%(id)s, %(run_id)s, %(tenant_id)s, %(error_code)s,"
        " %(error_message)s, %(catalog_entry_id)s, %(match_type)s, %(match_confidence)s, %(category)s, %(severity)s,"
        " %(is_retryable)s, %(recovery_mode)s, %(recovery_suggestion)s, %(skill_id)s, %(step_index)s,"
        " %(context_json)s, COALESCE(%(created_at)s, now() AT TIME ZONE 'utc'))"
        " ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id",
        {**failure.model_dump(), "context_json": Jsonb(failure.context_json) if failure.context_json else None,
         "created_at": failure.created_at.replace(tzinfo=None) if failure.created_at else None},
    ).fetchone()
    return row is not None


# The columns insert() writes, from rows typed by the table itself (jsonb_populate_recordset).
_WRITTEN = ("id, run_id, tenant_id, error_code, error_message, catalog_entry_id, match_type, match_confidence,"
            " category, severity, is_retryable, recovery_mode, recovery_suggestion, skill_id, step_index, context_json")


def insert_many(conn: Connection[Any], failures: Sequence[FailureRecord]) -> None:
    """insert() for each, in one statement whose answer nobody waits for (a pipelined batch's write)."""
    rows = [{**f.model_dump(mode="json", exclude={"created_at"}),
             "created_at": f.created_at.replace(tzinfo=None).isoformat() if f.created_at else None}
            for f in failures]
    conn.execute(
        f"INSERT INTO failure_matches ({_WRITTEN}, created_at) SELECT {_WRITTEN},"
        " COALESCE(created_at, now() AT TIME ZONE 'utc') FROM jsonb_populate_recordset(NULL::failure_matches,"
        " %(rows)s) ON CONFLICT (tenant_id, id) DO NOTHING",
        {"rows": Jsonb(rows)},
    )


Status = Literal["unrecovered", "recovered", "all"]


def list_failures(conn: Connection[Any], tenant_id: str, *, run_id: str | None = None, error_code: str | None = None,
                  category: str | None = None, status: Status = "all", since_hours: int = 24, limit: int = 100,
                  offset: int = 0) -> list[dict[str, Any]]:
    """The tenant's failures, newest first, with the seed's filters."""
    clauses = ["tenant_id = %(tenant)s", "created_at >= (now() AT TIME ZONE 'utc') - make_interval(hours => %(h)s)"]
    params: dict[str, Any] = {"tenant": tenant_id, "h": since_hours, "limit": limit, "offset": offset}
    for name, value in (("run_id", run_id), ("error_code", error_code), ("category", category)):
        if value is not None:
            clauses.append(f"{name} = %({name})s")
            params[name] = value
    if status == "unrecovered":
        clauses.append("recovery_succeeded = FALSE")
    elif status == "recovered":
        clauses.append("recovery_succeeded = TRUE")
    return conn.execute(
        f"SELECT {COLUMNS} FROM failure_matches WHERE {' AND '.join(clauses)}"
        " ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s",
        params,
    ).fetchall()


def unrecovered(conn: Connection[Any], tenant_id: str, *, category: str | None = None, since_hours: int = 24,
                limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    return list_failures(conn, tenant_id, category=category, status="unrecovered", since_hours=since_hours,
                         limit=limit, offset=offset)


def get_failure(conn: Connection[Any], tenant_id: str, failure_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {COLUMNS} FROM failure_matches WHERE tenant_id = %(t)s AND id = %(id)s",
        {"t": tenant_id, "id": failure_id},
    ).fetchone()


def record_recovery(conn: Connection[Any], tenant_id: str, failure_id: UUID, *, succeeded: bool, by: str,
                    notes: str | None) -> dict[str, Any] | None:
    """Set the audit columns of a recovery attempt; recovered_at only when it succeeded."""
    return conn.execute(
        "UPDATE failure_matches SET recovery_attempted = TRUE, recovery_succeeded = %(ok)s,"
        " recovered_at = CASE WHEN %(ok)s THEN now() AT TIME ZONE 'utc' ELSE NULL END,"
        " recovered_by = %(by)s, recovery_notes = %(notes)s, updated_at = now() AT TIME ZONE 'utc'"
        f" WHERE tenant_id = %(t)s AND id = %(id)s RETURNING {COLUMNS}",
        {"ok": succeeded, "by": by, "notes": notes, "t": tenant_id, "id": failure_id},
    ).fetchone()


def stats(conn: Connection[Any], tenant_id: str, since_hours: int = 24) -> dict[str, Any]:
    """Counts by category, severity and error code, and the catalog match rate, for a window."""
    params = {"t": tenant_id, "h": since_hours}
    window = ("tenant_id = %(t)s AND created_at >= (now() AT TIME ZONE 'utc') - make_interval(hours => %(h)s)")
    rows = conn.execute(
        "SELECT category, severity, error_code, (catalog_entry_id IS NOT NULL) AS hit, recovery_succeeded,"
        f" count(*) AS n FROM failure_matches WHERE {window}"
        " GROUP BY category, severity, error_code, hit, recovery_succeeded",
        params,
    ).fetchall()
    total = sum(r["n"] for r in rows)
    out: dict[str, Any] = {"since_hours": since_hours, "total": total, "by_category": {}, "by_severity": {},
                           "by_error_code": {}}
    for r in rows:
        for key, field in (("by_category", "category"), ("by_severity", "severity"), ("by_error_code", "error_code")):
            name = r[field] or "unknown"
            out[key][name] = out[key].get(name, 0) + r["n"]
    hits = sum(r["n"] for r in rows if r["hit"])
    out["match_rate"] = round(hits / total, 4) if total else None
    out["recovered"] = sum(r["n"] for r in rows if r["recovery_succeeded"])
    return out


def purge_batch(conn: Connection[Any], max_age_days: int, batch_size: int) -> int:
    """Delete at most `batch_size` failures older than `max_age_days`, every tenant's; how many went.

    Retention spans every tenant, which row-level security hides from the functions' role: this is
    the owner's narrow purge_failure_matches() (migration 0009), found through idx_fm_created_at.
    """
    row = conn.execute(
        "SELECT purge_failure_matches(%(days)s, %(n)s) AS n", {"days": max_age_days, "n": batch_size}
    ).fetchone()
    return int(row["n"]) if row else 0


def matches_of(conn: Connection[Any], tenant_id: str, ids: list[UUID]) -> list[dict[str, Any]]:
    """How these failures of one tenant were stored: id, match_type and catalog_entry_id of each found."""
    return conn.execute(
        "SELECT id, match_type, catalog_entry_id FROM failure_matches WHERE tenant_id = %(t)s AND id = ANY(%(ids)s)",
        {"t": tenant_id, "ids": ids},
    ).fetchall()


def migrated(conn: Connection[Any]) -> bool:
    """Whether failure_matches exists in this database (the migrations have run)."""
    row = conn.execute("SELECT to_regclass('failure_matches') AS t").fetchone()
    return bool(row and row["t"] is not None)
