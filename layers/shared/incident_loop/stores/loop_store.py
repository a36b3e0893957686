"""loop_events and loop_traces: what each stage did, and where each loop stands."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.enums import LoopStage, is_failure
from incident_loop.schemas.loop.events import LoopEvent


def lock_incident(conn: Connection[Any], incident_id: str) -> None:
    """Serialise stage work on one incident for the rest of the transaction (duplicate deliveries)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(id)s))", {"id": incident_id})


def start_trace(conn: Connection[Any], loop_id: str, incident_id: str, tenant_id: str) -> str:
    """Create the incident's loop trace unless it exists; returns the trace's loop id."""
    conn.execute(
        "INSERT INTO loop_traces (loop_id, incident_id, tenant_id, current_stage)"
        " VALUES (%(loop_id)s, %(incident_id)s, %(tenant_id)s, %(stage)s)"
        " ON CONFLICT (incident_id) DO NOTHING",
        {"loop_id": loop_id, "incident_id": incident_id, "tenant_id": tenant_id,
         "stage": LoopStage.INCIDENT_CREATED.value},
    )
    row = conn.execute(
        "SELECT loop_id FROM loop_traces WHERE tenant_id = %(tenant)s AND incident_id = %(id)s",
        {"tenant": tenant_id, "id": incident_id},
    ).fetchone()
    assert row is not None
    return str(row["loop_id"])


def stage_result(conn: Connection[Any], tenant_id: str, incident_id: str, key: str) -> dict[str, Any] | None:
    """The details recorded for an event key of the tenant's incident, or None when not yet recorded."""
    row = conn.execute(
        "SELECT details FROM loop_events WHERE event_key = %(key)s AND tenant_id = %(tenant)s",
        {"key": f"{incident_id}:{key}", "tenant": tenant_id},
    ).fetchone()
    return None if row is None else dict(row["details"])


def record_stage(
    conn: Connection[Any],
    event: LoopEvent,
    *,
    key: str | None = None,
    completed: bool = True,
    blocked: bool = False,
    pending_checkpoints: list[str] | None = None,
    loop_complete: bool = False,
) -> bool:
    """Append the event (once per key) and move the trace; returns False when already recorded."""
    key = key or event.stage.value
    inserted = conn.execute(
        "INSERT INTO loop_events (event_id, event_key, incident_id, tenant_id, stage, details,"
        " failure_state, confidence_band, requires_human_review)"
        " VALUES (%(event_id)s, %(key)s, %(incident_id)s, %(tenant_id)s, %(stage)s, %(details)s,"
        " %(failure_state)s, %(band)s, %(review)s)"
        " ON CONFLICT (event_key) DO NOTHING RETURNING event_id",
        {
            "event_id": event.event_id,
            "key": f"{event.incident_id}:{key}",
            "incident_id": event.incident_id,
            "tenant_id": event.tenant_id,
            "stage": event.stage.value,
            "details": Jsonb(event.details),
            "failure_state": event.failure_state.value if event.failure_state else None,
            "band": event.confidence_band.value if event.confidence_band else None,
            "review": event.requires_human_review,
        },
    ).fetchone()
    if inserted is None:
        return False
    failed = is_failure(event.failure_state)
    conn.execute(
        # A complete loop stays complete: a late or replayed event never moves it back.
        """UPDATE loop_traces SET
               current_stage = CASE WHEN is_complete THEN current_stage ELSE %(stage)s END,
               stages_completed = CASE WHEN %(completed)s AND NOT stages_completed ? %(stage)s
                                       THEN stages_completed || to_jsonb(%(stage)s::text)
                                       ELSE stages_completed END,
               stages_failed = CASE WHEN %(failed)s AND NOT stages_failed ? %(stage)s
                                    THEN stages_failed || to_jsonb(%(stage)s::text)
                                    ELSE stages_failed END,
               stage_results = stage_results || jsonb_build_object(%(stage)s::text, %(details)s::jsonb),
               pending_checkpoints = %(pending)s,
               is_blocked = %(blocked)s,
               failure_state = %(failure_state)s,
               is_complete = is_complete OR %(loop_complete)s,
               completed_at = CASE WHEN NOT is_complete AND %(loop_complete)s THEN now() ELSE completed_at END,
               updated_at = now()
           WHERE tenant_id = %(tenant_id)s AND incident_id = %(incident_id)s""",
        {
            "stage": event.stage.value,
            "completed": completed,
            "failed": failed,
            "details": Jsonb(event.details),
            "pending": Jsonb(pending_checkpoints or []),
            "blocked": blocked,
            "failure_state": event.failure_state.value if event.failure_state else None,
            "loop_complete": loop_complete,
            "tenant_id": event.tenant_id,
            "incident_id": event.incident_id,
        },
    )
    return True


def stages_completed(conn: Connection[Any], tenant_id: str, incident_id: str) -> list[str] | None:
    """The stages the tenant's incident has completed, in order (None when it has no loop trace)."""
    row = conn.execute(
        "SELECT stages_completed FROM loop_traces WHERE tenant_id = %(tenant)s AND incident_id = %(id)s",
        {"tenant": tenant_id, "id": incident_id},
    ).fetchone()
    return None if row is None else list(row["stages_completed"])


def get_trace(conn: Connection[Any], tenant_id: str, incident_id: str) -> dict[str, Any] | None:
    """The loop trace of an incident, scoped to its tenant."""
    return conn.execute(
        "SELECT * FROM loop_traces WHERE incident_id = %(id)s AND tenant_id = %(tenant)s",
        {"id": incident_id, "tenant": tenant_id},
    ).fetchone()


def list_events(conn: Connection[Any], tenant_id: str, incident_id: str) -> list[dict[str, Any]]:
    """Every loop event of an incident, oldest first."""
    return conn.execute(
        "SELECT event_id, event_key, stage, details, failure_state, confidence_band,"
        " requires_human_review, created_at FROM loop_events"
        " WHERE incident_id = %(id)s AND tenant_id = %(tenant)s ORDER BY created_at, event_id",
        {"id": incident_id, "tenant": tenant_id},
    ).fetchall()


def first_complete(conn: Connection[Any], tenant_id: str) -> dict[str, Any] | None:
    """The tenant's first loop to complete (loop_id, incident_id), or None."""
    return conn.execute(
        "SELECT loop_id, incident_id FROM loop_traces WHERE tenant_id = %(t)s AND is_complete"
        " ORDER BY completed_at LIMIT 1",
        {"t": tenant_id},
    ).fetchone()


class PostgresLoopStore:
    """LoopStore on the unit of work's connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def lock(self, incident_id: str) -> None:
        lock_incident(self._conn, incident_id)

    def start(self, loop_id: str, incident_id: str, tenant_id: str) -> str:
        return start_trace(self._conn, loop_id, incident_id, tenant_id)

    def result(self, tenant_id: str, incident_id: str, key: str) -> dict[str, Any] | None:
        return stage_result(self._conn, tenant_id, incident_id, key)

    def record(self, event: LoopEvent, *, key: str | None = None, completed: bool = True, blocked: bool = False,
               pending_checkpoints: list[str] | None = None, loop_complete: bool = False) -> bool:
        return record_stage(self._conn, event, key=key, completed=completed, blocked=blocked,
                            pending_checkpoints=pending_checkpoints, loop_complete=loop_complete)

    def completed(self, tenant_id: str, incident_id: str) -> list[str] | None:
        return stages_completed(self._conn, tenant_id, incident_id)

    def trace(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        return get_trace(self._conn, tenant_id, incident_id)

    def first_complete(self, tenant_id: str) -> dict[str, Any] | None:
        return first_complete(self._conn, tenant_id)
