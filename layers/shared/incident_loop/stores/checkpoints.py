"""human_checkpoints: where the loop waits for a person."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.events import HumanCheckpoint

_COLUMNS = (
    "id AS checkpoint_id, checkpoint_type, incident_id, tenant_id, stage, target_id, description,"
    " options, created_at, resolved_at, resolved_by, resolution"
)


def insert_checkpoint(conn: Connection[Any], cp: HumanCheckpoint) -> HumanCheckpoint:
    """Open the checkpoint unless the same one is already open; returns the stored one (one statement,
    a second only when another transaction stored it after the first one's snapshot was taken)."""
    params = {
        "id": cp.checkpoint_id,
        "tenant": cp.tenant_id,
        "type": cp.checkpoint_type.value,
        "incident": cp.incident_id,
        "stage": cp.stage.value,
        "target": cp.target_id,
        "description": cp.description,
        "options": Jsonb(cp.options),
        "created": cp.created_at,
    }
    stored = (f"SELECT {_COLUMNS} FROM human_checkpoints WHERE tenant_id = %(tenant)s"
              " AND incident_id = %(incident)s AND checkpoint_type = %(type)s AND target_id = %(target)s")
    row = conn.execute(
        "WITH ins AS (INSERT INTO human_checkpoints (id, tenant_id, checkpoint_type, incident_id, stage, target_id,"
        " description, options, created_at) VALUES (%(id)s, %(tenant)s, %(type)s, %(incident)s,"
        " %(stage)s, %(target)s, %(description)s, %(options)s, %(created)s)"
        f" ON CONFLICT (incident_id, checkpoint_type, target_id) DO NOTHING RETURNING {_COLUMNS})"
        f" SELECT * FROM ins UNION ALL {stored} AND NOT EXISTS (SELECT 1 FROM ins)",
        params,
    ).fetchone() or conn.execute(stored, params).fetchone()
    assert row is not None
    return HumanCheckpoint.model_validate(row)


def get_checkpoint(conn: Connection[Any], tenant_id: str, checkpoint_id: str) -> HumanCheckpoint | None:
    """One checkpoint of the tenant, locked: two people resolving it at once cannot both win."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM human_checkpoints WHERE id = %(id)s AND tenant_id = %(tenant)s FOR UPDATE",
        {"id": checkpoint_id, "tenant": tenant_id},
    ).fetchone()
    return None if row is None else HumanCheckpoint.model_validate(row)


def list_checkpoints(conn: Connection[Any], tenant_id: str, pending_only: bool) -> list[HumanCheckpoint]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM human_checkpoints WHERE tenant_id = %(tenant)s"
        " AND (NOT %(pending)s OR resolved_at IS NULL) ORDER BY created_at, id",
        {"tenant": tenant_id, "pending": pending_only},
    ).fetchall()
    return [HumanCheckpoint.model_validate(r) for r in rows]


def pending_for_incident(conn: Connection[Any], tenant_id: str, incident_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM human_checkpoints WHERE tenant_id = %(tenant)s AND incident_id = %(id)s"
        " AND resolved_at IS NULL ORDER BY id",
        {"tenant": tenant_id, "id": incident_id},
    ).fetchall()
    return [r["id"] for r in rows]


def save_resolution(conn: Connection[Any], tenant_id: str, cp: HumanCheckpoint, reason: str | None) -> None:
    conn.execute(
        "UPDATE human_checkpoints SET resolved_at = %(at)s, resolved_by = %(by)s, resolution = %(resolution)s,"
        " resolution_reason = %(reason)s WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {"at": cp.resolved_at, "by": cp.resolved_by, "resolution": cp.resolution, "reason": reason,
         "tenant": tenant_id, "id": cp.checkpoint_id},
    )


class PostgresCheckpointStore:
    """CheckpointStore on the unit of work's connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def insert(self, checkpoint: HumanCheckpoint) -> HumanCheckpoint:
        return insert_checkpoint(self._conn, checkpoint)

    def get(self, tenant_id: str, checkpoint_id: str) -> HumanCheckpoint | None:
        return get_checkpoint(self._conn, tenant_id, checkpoint_id)

    def of_tenant(self, tenant_id: str, pending_only: bool) -> list[HumanCheckpoint]:
        return list_checkpoints(self._conn, tenant_id, pending_only)

    def save_resolution(self, tenant_id: str, checkpoint: HumanCheckpoint, reason: str | None) -> None:
        save_resolution(self._conn, tenant_id, checkpoint, reason)
