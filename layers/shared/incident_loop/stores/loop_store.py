"""loop_events and loop_traces: what each stage did, and where each loop stands."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.enums import LoopStage, is_failure
from incident_loop.schemas.loop.events import LoopEvent
from incident_loop.stores.records import Progress, StageRecord


def lock_incident(conn: Connection[Any], incident_id: str) -> None:
    """Serialise stage work on one incident for the rest of the transaction (duplicate deliveries)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(id)s))", {"id": incident_id})


def lock_incidents(conn: Connection[Any], incident_ids: Collection[str]) -> None:
    """lock_incident() for each, in one statement, in the order of the lock keys: two transactions locking
    overlapping sets take the shared locks in the same order, so they queue instead of deadlocking."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM"
        " (SELECT DISTINCT hashtext(id) AS k FROM unnest(%(ids)s::text[]) AS id ORDER BY k) AS keys",
        {"ids": sorted(incident_ids)},
    )


# Open loops unless they exist, answering every incident's loop id in the same statement: under the
# incidents' locks nobody else opens them meanwhile, so the snapshot's rows are the ones that count.
START_SQL = (
    "WITH r AS (SELECT * FROM jsonb_to_recordset(%(rows)s) AS r(loop_id text, incident_id text)),"
    " ins AS (INSERT INTO loop_traces (loop_id, incident_id, tenant_id, current_stage)"
    " SELECT loop_id, incident_id, %(tenant)s, %(stage)s FROM r ON CONFLICT (incident_id) DO NOTHING"
    " RETURNING incident_id, loop_id)"
    " SELECT incident_id, loop_id FROM ins UNION ALL SELECT t.incident_id, t.loop_id FROM loop_traces t"
    " JOIN r USING (incident_id) WHERE t.tenant_id = %(tenant)s"
)


def start_traces(conn: Connection[Any], tenant_id: str, loops: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Create each (loop id, incident id)'s trace unless it exists; every incident's loop id."""
    rows = conn.execute(START_SQL, {
        "rows": Jsonb([{"loop_id": loop_id, "incident_id": incident_id} for loop_id, incident_id in loops]),
        "tenant": tenant_id, "stage": LoopStage.INCIDENT_CREATED.value,
    }).fetchall()
    found = {r["incident_id"]: str(r["loop_id"]) for r in rows}
    missing = [incident_id for _, incident_id in loops if incident_id not in found]
    if missing:  # a trace another transaction committed after this statement's snapshot was taken
        found.update({r["incident_id"]: str(r["loop_id"]) for r in conn.execute(
            "SELECT incident_id, loop_id FROM loop_traces WHERE tenant_id = %(t)s AND incident_id = ANY(%(ids)s)",
            {"t": tenant_id, "ids": missing}).fetchall()})
    return found


def start_trace(conn: Connection[Any], loop_id: str, incident_id: str, tenant_id: str) -> str:
    """Create the incident's loop trace unless it exists; returns the trace's loop id."""
    return start_traces(conn, tenant_id, [(loop_id, incident_id)])[incident_id]


def stage_result(conn: Connection[Any], tenant_id: str, incident_id: str, key: str) -> dict[str, Any] | None:
    """The details recorded for an event key of the tenant's incident, or None when not yet recorded."""
    row = conn.execute(
        "SELECT details FROM loop_events WHERE event_key = %(key)s AND tenant_id = %(tenant)s",
        {"key": f"{incident_id}:{key}", "tenant": tenant_id},
    ).fetchone()
    return None if row is None else dict(row["details"])


class StageProgress(Mapping[str, Progress]):
    """Where each incident's loop stands (stage_progress), read when first looked at: in a pipelined
    transaction the statement travels with the next read made before that, at no round trip of its own."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._rows: dict[str, Progress] | None = None

    def _read(self) -> dict[str, Progress]:
        if self._rows is None:
            self._rows = {r["id"]: Progress(None if r["stages_completed"] is None else list(r["stages_completed"]),
                                            None if r["details"] is None else dict(r["details"]))
                          for r in self._cursor.fetchall()}
        return self._rows

    def __getitem__(self, incident_id: str) -> Progress:
        return self._read()[incident_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


def stage_progress(conn: Connection[Any], tenant_id: str, incident_ids: Collection[str],
                   key: str) -> Mapping[str, Progress]:
    """For each incident: the stages its trace completed (None without one) and the details recorded
    under the event key (None when not yet): one statement for a batch's loops."""
    return StageProgress(conn.execute(
        "SELECT i.id, t.stages_completed, e.details FROM unnest(%(ids)s::text[]) AS i(id)"
        " LEFT JOIN loop_traces t ON t.tenant_id = %(tenant)s AND t.incident_id = i.id"
        " LEFT JOIN loop_events e ON e.tenant_id = %(tenant)s AND e.event_key = i.id || ':' || %(key)s",
        {"ids": list(incident_ids), "tenant": tenant_id, "key": key},
    ))


# Append events once per key and move the traces of those appended, in one statement. A complete loop
# stays complete: a late or replayed event never moves it back.
RECORD_SQL = """
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s) AS r(event_id text, event_key text, incident_id text,
        tenant_id text, stage text, details jsonb, failure_state text, band text, review boolean,
        completed boolean, failed boolean, pending jsonb, blocked boolean, loop_complete boolean)),
ins AS (
    INSERT INTO loop_events (event_id, event_key, incident_id, tenant_id, stage, details, failure_state,
                             confidence_band, requires_human_review)
    SELECT event_id, event_key, incident_id, tenant_id, stage, details, failure_state, band, review FROM r
    ON CONFLICT (event_key) DO NOTHING RETURNING event_key),
moved AS (
    UPDATE loop_traces t SET
        current_stage = CASE WHEN t.is_complete THEN t.current_stage ELSE r.stage END,
        stages_completed = CASE WHEN r.completed AND NOT t.stages_completed ? r.stage
                                THEN t.stages_completed || to_jsonb(r.stage) ELSE t.stages_completed END,
        stages_failed = CASE WHEN r.failed AND NOT t.stages_failed ? r.stage
                             THEN t.stages_failed || to_jsonb(r.stage) ELSE t.stages_failed END,
        stage_results = t.stage_results || jsonb_build_object(r.stage, r.details),
        pending_checkpoints = r.pending,
        is_blocked = r.blocked,
        failure_state = r.failure_state,
        is_complete = t.is_complete OR r.loop_complete,
        completed_at = CASE WHEN NOT t.is_complete AND r.loop_complete THEN now() ELSE t.completed_at END,
        updated_at = now()
    FROM r JOIN ins USING (event_key)
    WHERE t.tenant_id = r.tenant_id AND t.incident_id = r.incident_id
    RETURNING 1)
SELECT count(*) AS n FROM ins
"""


def _record_row(record: StageRecord) -> dict[str, Any]:
    event = record.event
    return {
        "event_id": event.event_id, "event_key": f"{event.incident_id}:{record.key or event.stage.value}",
        "incident_id": event.incident_id, "tenant_id": event.tenant_id, "stage": event.stage.value,
        "details": event.details, "failure_state": event.failure_state.value if event.failure_state else None,
        "band": event.confidence_band.value if event.confidence_band else None,
        "review": event.requires_human_review, "completed": record.completed,
        "failed": is_failure(event.failure_state), "pending": list(record.pending_checkpoints),
        "blocked": record.blocked, "loop_complete": record.loop_complete,
    }


def record_stages(conn: Connection[Any], records: Sequence[StageRecord]) -> None:
    """record_stage() for each, in one statement whose answer nobody waits for. One UPDATE moves a trace
    once, so a second record of the same incident goes in a statement of its own, after the first."""
    waves: list[list[StageRecord]] = []
    for record in records:
        wave = next((w for w in waves if all(r.event.incident_id != record.event.incident_id for r in w)), None)
        if wave is None:
            waves.append(wave := [])
        wave.append(record)
    for wave in waves:
        conn.execute(RECORD_SQL, {"rows": Jsonb([_record_row(r) for r in wave])})


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
    """Append the event (once per key) and move the trace, in one statement; False when already recorded."""
    record = StageRecord(event, key, completed, blocked, tuple(pending_checkpoints or ()), loop_complete)
    row = conn.execute(RECORD_SQL, {"rows": Jsonb([_record_row(record)])}).fetchone()
    return bool(row and row["n"])


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

    def lock_all(self, incident_ids: Collection[str]) -> None:
        lock_incidents(self._conn, incident_ids)

    def start(self, loop_id: str, incident_id: str, tenant_id: str) -> str:
        return start_trace(self._conn, loop_id, incident_id, tenant_id)

    def start_all(self, tenant_id: str, loops: Sequence[tuple[str, str]]) -> dict[str, str]:
        return start_traces(self._conn, tenant_id, loops)

    def progress(self, tenant_id: str, incident_ids: Collection[str], key: str) -> Mapping[str, Progress]:
        return stage_progress(self._conn, tenant_id, incident_ids, key)

    def result(self, tenant_id: str, incident_id: str, key: str) -> dict[str, Any] | None:
        return stage_result(self._conn, tenant_id, incident_id, key)

    def record(self, event: LoopEvent, *, key: str | None = None, completed: bool = True, blocked: bool = False,
               pending_checkpoints: list[str] | None = None, loop_complete: bool = False) -> bool:
        return record_stage(self._conn, event, key=key, completed=completed, blocked=blocked,
                            pending_checkpoints=pending_checkpoints, loop_complete=loop_complete)

    def record_all(self, records: Sequence[StageRecord]) -> None:
        record_stages(self._conn, records)

    def trace(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        return get_trace(self._conn, tenant_id, incident_id)

    def first_complete(self, tenant_id: str) -> dict[str, Any] | None:
        return first_complete(self._conn, tenant_id)
