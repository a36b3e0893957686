"""Incidents, loop events and traces, checkpoints and queues, in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import IncidentIn
from incident_loop.schemas.loop.enums import is_failure
from incident_loop.schemas.loop.events import HumanCheckpoint, LoopEvent
from incident_loop.stores.records import Progress, StageRecord


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryIncidentStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # by id

    def insert(self, incident_id: str, tenant_id: str, incident: IncidentIn) -> tuple[str, bool]:
        key = incident.derived_key()
        for row in self.rows.values():
            if row["tenant_id"] == tenant_id and row["incident_key"] == key:
                return row["id"], False
        self.rows[incident_id] = {
            "id": incident_id, "tenant_id": tenant_id, "incident_key": key, "agent_id": incident.agent_id,
            "run_id": incident.run_id, "error_type": incident.error_type, "error_message": incident.error_message,
            "skill_id": incident.skill_id, "severity": incident.severity.value, "context": dict(incident.context),
            "status": "open", "created_at": _now(),
        }
        return incident_id, True

    def insert_many(self, tenant_id: str, incidents: Sequence[tuple[str, IncidentIn]]) -> list[tuple[str, bool]]:
        return [self.insert(incident_id, tenant_id, incident) for incident_id, incident in incidents]

    def get(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        row = self.rows.get(incident_id)
        return dict(row) if row is not None and row["tenant_id"] == tenant_id else None

    def get_many(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        return {i: row for i in incident_ids if (row := self.get(tenant_id, i)) is not None}

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> None:
        row = self.rows.get(incident_id)
        if row is not None and row["tenant_id"] == tenant_id:
            row["status"] = status


class MemoryLoopStore:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}  # by event key ("<incident>:<stage>[:<decision>]")
        self.traces: dict[str, dict[str, Any]] = {}  # by incident id

    def lock(self, incident_id: str) -> None:
        """One thread: nothing to serialise."""

    def lock_all(self, incident_ids: Collection[str]) -> None:
        """One thread: nothing to serialise."""

    def start(self, loop_id: str, incident_id: str, tenant_id: str) -> str:
        trace = self.traces.setdefault(incident_id, {
            "loop_id": loop_id, "incident_id": incident_id, "tenant_id": tenant_id,
            "current_stage": "incident_created", "stages_completed": [], "stages_failed": [],
            "stage_results": {}, "pending_checkpoints": [], "is_complete": False, "is_blocked": False,
            "failure_state": None, "started_at": _now(), "completed_at": None,
        })
        return str(trace["loop_id"])

    def start_all(self, tenant_id: str, loops: Sequence[tuple[str, str]]) -> dict[str, str]:
        return {incident_id: self.start(loop_id, incident_id, tenant_id) for loop_id, incident_id in loops}

    def progress(self, tenant_id: str, incident_ids: Collection[str], key: str) -> dict[str, Progress]:
        return {i: Progress(self.completed(tenant_id, i), self.result(tenant_id, i, key)) for i in incident_ids}

    def result(self, tenant_id: str, incident_id: str, key: str) -> dict[str, Any] | None:
        event = self.events.get(f"{incident_id}:{key}")
        return deepcopy(event["details"]) if event is not None and event["tenant_id"] == tenant_id else None

    def record(self, event: LoopEvent, *, key: str | None = None, completed: bool = True, blocked: bool = False,
               pending_checkpoints: list[str] | None = None, loop_complete: bool = False) -> bool:
        event_key = f"{event.incident_id}:{key or event.stage.value}"
        if event_key in self.events:
            return False
        self.events[event_key] = {**event.model_dump(mode="json"), "event_key": event_key}
        trace = self.traces.get(event.incident_id)
        if trace is None or trace["tenant_id"] != event.tenant_id:
            return True
        stage = event.stage.value
        if not trace["is_complete"]:  # a complete loop stays complete
            trace["current_stage"] = stage
        if completed and stage not in trace["stages_completed"]:
            trace["stages_completed"].append(stage)
        if is_failure(event.failure_state) and stage not in trace["stages_failed"]:
            trace["stages_failed"].append(stage)
        trace["stage_results"][stage] = deepcopy(self.events[event_key]["details"])
        trace["pending_checkpoints"] = list(pending_checkpoints or [])
        trace["is_blocked"] = blocked
        trace["failure_state"] = event.failure_state.value if event.failure_state else None
        if loop_complete and not trace["is_complete"]:
            trace["is_complete"], trace["completed_at"] = True, _now()
        return True

    def record_all(self, records: Sequence[StageRecord]) -> None:
        for r in records:
            self.record(r.event, key=r.key, completed=r.completed, blocked=r.blocked,
                        pending_checkpoints=list(r.pending_checkpoints), loop_complete=r.loop_complete)

    def completed(self, tenant_id: str, incident_id: str) -> list[str] | None:
        trace = self.trace(tenant_id, incident_id)
        return None if trace is None else list(trace["stages_completed"])

    def trace(self, tenant_id: str, incident_id: str) -> dict[str, Any] | None:
        trace = self.traces.get(incident_id)
        return deepcopy(trace) if trace is not None and trace["tenant_id"] == tenant_id else None

    def first_complete(self, tenant_id: str) -> dict[str, Any] | None:
        done = sorted((t for t in self.traces.values() if t["tenant_id"] == tenant_id and t["is_complete"]),
                      key=lambda t: t["completed_at"])
        return {"loop_id": done[0]["loop_id"], "incident_id": done[0]["incident_id"]} if done else None


class MemoryCheckpointStore:
    def __init__(self) -> None:
        self.rows: dict[str, HumanCheckpoint] = {}  # by id
        self.reasons: dict[str, str | None] = {}

    def insert(self, checkpoint: HumanCheckpoint) -> HumanCheckpoint:
        for stored in self.rows.values():
            if (stored.incident_id, stored.checkpoint_type, stored.target_id) == (
                    checkpoint.incident_id, checkpoint.checkpoint_type, checkpoint.target_id):
                return stored.model_copy(deep=True)
        self.rows[checkpoint.checkpoint_id] = checkpoint.model_copy(deep=True)
        return checkpoint.model_copy(deep=True)

    def get(self, tenant_id: str, checkpoint_id: str) -> HumanCheckpoint | None:
        stored = self.rows.get(checkpoint_id)
        return stored.model_copy(deep=True) if stored is not None and stored.tenant_id == tenant_id else None

    def of_tenant(self, tenant_id: str, pending_only: bool) -> list[HumanCheckpoint]:
        rows = [c for c in self.rows.values() if c.tenant_id == tenant_id and (not pending_only or c.is_pending())]
        return [c.model_copy(deep=True) for c in sorted(rows, key=lambda c: (c.created_at, c.checkpoint_id))]

    def save_resolution(self, tenant_id: str, checkpoint: HumanCheckpoint, reason: str | None) -> None:
        if checkpoint.checkpoint_id in self.rows and self.rows[checkpoint.checkpoint_id].tenant_id == tenant_id:
            self.rows[checkpoint.checkpoint_id] = checkpoint.model_copy(deep=True)
            self.reasons[checkpoint.checkpoint_id] = reason


class MemoryStageQueues:
    """Remembers what was sent, in order; send_all() sends each through send() (so a test can break it)."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)

    def send_all(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        answers: list[Exception | None] = []
        for envelope in envelopes:
            try:
                self.send(envelope)
                answers.append(None)
            except Exception as exc:  # noqa: BLE001 - the answer for that envelope
                answers.append(exc)
        return answers


class SentMessages(list[Any]):
    """What was sent to a queue: outside every transaction, so a rollback does not take it back."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SentMessages:
        return self


class MemoryNotifications:
    """A NotificationOutbox in memory: targets by (tenant, event), runs by id, and the runner's queue.

    A run's message is pending until its transaction commits (flush), as on PostgreSQL."""

    def __init__(self) -> None:
        self.configured: dict[tuple[str, str], Any] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []
        self.queued = SentMessages()

    def targets(self, tenant_id: str, event: Any) -> Any:
        return self.configured.get((tenant_id, event.value))

    def submit(self, run_id: str, tenant_id: str, name: str, definition: Any) -> None:
        self.runs.setdefault(run_id, {"tenant_id": tenant_id, "name": name, "definition": deepcopy(definition)})
        self.pending.append(run_id)

    def discard(self) -> None:
        self.pending.clear()

    def flush(self) -> None:
        self.queued.extend(self.pending)
        self.pending.clear()
