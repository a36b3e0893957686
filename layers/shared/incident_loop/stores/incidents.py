"""The incidents table."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.incident import IncidentIn


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
    """IncidentStore on the unit of work's connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def insert(self, incident_id: str, tenant_id: str, incident: IncidentIn) -> tuple[str, bool]:
        return insert_incident(self._conn, incident_id, tenant_id, incident)

    def get(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        return get_incident(self._conn, tenant_id, incident_id)

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> None:
        set_status(self._conn, tenant_id, incident_id, status)
