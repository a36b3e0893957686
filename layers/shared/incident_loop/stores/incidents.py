"""The incidents table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.incident import IncidentIn
from incident_loop.stores.read_ahead import MISSING, ReadAhead

# Many incidents in one statement: the rows travel as one JSON array (one parameter, any batch size).
INSERT_MANY_SQL = (
    "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type, error_message, skill_id,"
    " severity, context) SELECT r.id, %(tenant)s, r.incident_key, r.agent_id, r.run_id, r.error_type,"
    " r.error_message, r.skill_id, r.severity, r.context FROM jsonb_to_recordset(%(rows)s) AS r(id text,"
    " incident_key text, agent_id text, run_id text, error_type text, error_message text, skill_id text,"
    " severity text, context jsonb) ON CONFLICT (tenant_id, incident_key) DO NOTHING RETURNING id, incident_key"
)


def insert_incident(
    conn: Connection[Any], incident_id: str, tenant_id: str, incident: IncidentIn
) -> tuple[str, bool]:
    """Store the incident once per (tenant, key); returns (its id, whether it was new)."""
    row = conn.execute(
        "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type,"
        " error_message, skill_id, severity, context)"
        " VALUES (%(id)s, %(tenant)s, %(key)s, %(agent)s, %(run)s, %(etype)s, %(msg)s, %(skill)s,"
        " %(severity)s, %(context)s)"
        " ON CONFLICT (tenant_id, incident_key) DO NOTHING RETURNING id",
        {
            "id": incident_id,
            "tenant": tenant_id,
            "key": incident.derived_key(),
            "agent": incident.agent_id,
            "run": incident.run_id,
            "etype": incident.error_type,
            "msg": incident.error_message,
            "skill": incident.skill_id,
            "severity": incident.severity.value,
            "context": Jsonb(incident.context),
        },
    ).fetchone()
    if row is not None:
        return incident_id, True
    existing = conn.execute(
        "SELECT id FROM incidents WHERE tenant_id = %(tenant)s AND incident_key = %(key)s",
        {"tenant": tenant_id, "key": incident.derived_key()},
    ).fetchone()
    assert existing is not None
    return str(existing["id"]), False


def insert_incidents(conn: Connection[Any], tenant_id: str,
                     incidents: Sequence[tuple[str, IncidentIn]]) -> list[tuple[str, bool]]:
    """insert_incident() for each (new id, incident), in one statement (a second finds the known ones)."""
    keys = [incident.derived_key() for _, incident in incidents]
    rows: dict[str, dict[str, Any]] = {}
    for (incident_id, incident), key in zip(incidents, keys, strict=True):
        rows.setdefault(key, {  # the same key twice in one batch: one incident, as two reports would be
            "id": incident_id, "incident_key": key, "agent_id": incident.agent_id, "run_id": incident.run_id,
            "error_type": incident.error_type, "error_message": incident.error_message,
            "skill_id": incident.skill_id, "severity": incident.severity.value, "context": incident.context})
    new = {r["incident_key"]: r["id"] for r in conn.execute(
        INSERT_MANY_SQL, {"tenant": tenant_id, "rows": Jsonb(list(rows.values()))}).fetchall()}
    known = {r["incident_key"]: r["id"] for r in conn.execute(
        "SELECT id, incident_key FROM incidents WHERE tenant_id = %(tenant)s AND incident_key = ANY(%(keys)s)",
        {"tenant": tenant_id, "keys": [k for k in rows if k not in new]},
    ).fetchall()} if len(new) < len(rows) else {}
    answers, seen = [], set()
    for key in keys:
        answers.append((new[key], key not in seen) if key in new else (known[key], False))
        seen.add(key)
    return answers


def get_incident(conn: Connection[Any], tenant_id: str, incident_id: str) -> dict[str, Any] | None:
    """One incident of the tenant by id; None when it is not stored, or is another tenant's."""
    return conn.execute(
        "SELECT * FROM incidents WHERE tenant_id = %(tenant)s AND id = %(id)s", {"tenant": tenant_id, "id": incident_id}
    ).fetchone()


def set_status(conn: Connection[Any], tenant_id: str, incident_id: str, status: str) -> None:
    conn.execute(
        "UPDATE incidents SET status = %(status)s WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {"status": status, "tenant": tenant_id, "id": incident_id},
    )


class PostgresIncidentStore:
    """IncidentStore on the unit of work's connection; get() answers from what get_many() read ahead."""

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None) -> None:
        self._conn = conn
        self._ahead = read_ahead or ReadAhead()

    def insert(self, incident_id: str, tenant_id: str, incident: IncidentIn) -> tuple[str, bool]:
        return insert_incident(self._conn, incident_id, tenant_id, incident)

    def insert_many(self, tenant_id: str, incidents: Sequence[tuple[str, IncidentIn]]) -> list[tuple[str, bool]]:
        return insert_incidents(self._conn, tenant_id, incidents)

    def get(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        row = self._ahead.get("incident", (tenant_id, incident_id))
        if row is MISSING:
            return get_incident(self._conn, tenant_id, incident_id)
        return None if row is None else dict(row)

    def get_many(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM incidents WHERE tenant_id = %(tenant)s AND id = ANY(%(ids)s)",
                                  {"tenant": tenant_id, "ids": list(incident_ids)}).fetchall()
        found = {r["id"]: r for r in rows}
        self._ahead.put_all("incident", tenant_id, incident_ids, found)
        return {k: dict(v) for k, v in found.items()}

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> None:
        set_status(self._conn, tenant_id, incident_id, status)
        row = self._ahead.get("incident", (tenant_id, incident_id))
        if row not in (MISSING, None):
            row["status"] = status
