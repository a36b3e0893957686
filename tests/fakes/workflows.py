"""In-memory fakes of the workflows' ports (incident_loop.workflows.ports): the audit, the queue, the skills.

MemoryAudit keeps the PostgreSQL store's semantics where the runner's rules depend on them: one op per
(run, op_index) (a second claim returns the stored row), only a pending op takes an outcome, a lease held by
one owner at a time, tenant scoping, and a transaction that rolls back when its block raises. FakeSkill counts
its effects and keeps one result per idempotency key, as the real skills do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from incident_loop.skills.errors import SkillError, UnknownSkill


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryAudit:
    """An AuditStore in memory; `leases` maps run id to its holder (None when free)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.op_rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.replays: list[Any] = []
        self.leases: dict[str, str | None] = {}
        self.tenants: list[str | None] = []

    @contextmanager
    def begin(self, tenant_id: str | None) -> Iterator[MemoryAudit]:
        self.tenants.append(tenant_id)
        saved = deepcopy((self.runs, self.op_rows, self.replays, self.leases))
        try:
            yield self
        except BaseException:
            self.runs, self.op_rows, self.replays, self.leases = saved
            raise

    def create_run(self, run_id: str, tenant_id: str, name: str | None, definition: Mapping[str, Any]) -> bool:
        if run_id in self.runs:
            return False
        now = _now()
        self.runs[run_id] = {"id": run_id, "tenant_id": tenant_id, "name": name, "definition": dict(definition),
                             "status": "queued", "error_code": None, "error_message": None, "created_at": now,
                             "updated_at": now, "completed_at": None}
        return True

    def same_definition(self, tenant_id: str, run_id: str, definition: Mapping[str, Any]) -> bool:
        run = self.run(tenant_id, run_id)
        return run is not None and json.dumps(run["definition"], sort_keys=True) == json.dumps(dict(definition),
                                                                                               sort_keys=True)

    def run(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        run = self.runs.get(run_id)
        return dict(run) if run and run["tenant_id"] == tenant_id else None

    def take_lease(self, tenant_id: str, run_id: str, owner: str, seconds: float) -> bool:
        run = self.run(tenant_id, run_id)
        if run is None or run["status"] not in ("queued", "running") or self.leases.get(run_id) not in (None, owner):
            return False
        self.leases[run_id] = owner
        self.runs[run_id]["status"] = "running"
        return True

    def release_lease(self, tenant_id: str, run_id: str, owner: str) -> None:
        if self.leases.get(run_id) == owner:
            self.leases[run_id] = None

    def finish_run(self, tenant_id: str, run_id: str, status: str, error_code: str | None = None,
                   error_message: str | None = None) -> None:
        self.runs[run_id].update(status=status, error_code=error_code, error_message=error_message,
                                 completed_at=_now(), updated_at=_now())
        self.leases[run_id] = None

    def ops(self, tenant_id: str, run_id: str) -> list[dict[str, Any]]:
        found = [dict(op) for (run, _), op in self.op_rows.items() if run == run_id and op["tenant_id"] == tenant_id]
        return sorted(found, key=lambda op: op["op_index"])

    def ops_within(self, tenant_id: str, run_id: str, budget: int) -> list[dict[str, Any]]:
        out, spent = [], 0
        for op in self.ops(tenant_id, run_id):  # sizes as PostgreSQL's jsonb text writes them
            spent += len(json.dumps(op["args"], ensure_ascii=False).encode()) + (
                0 if op["result"] is None else len(json.dumps(op["result"], ensure_ascii=False).encode()))
            inline = spent <= budget
            out.append({**op, "args": op["args"] if inline else None, "result": op["result"] if inline else None,
                        "omitted": not inline})
        return out

    def op(self, tenant_id: str, run_id: str, op_index: int) -> dict[str, Any] | None:
        found = self.op_rows.get((run_id, op_index))
        return dict(found) if found is not None and found["tenant_id"] == tenant_id else None

    def as_stored(self, value: Any) -> Any:
        return json.loads(json.dumps(value))

    def claim_op(self, op: Any) -> dict[str, Any]:
        key = (op.workflow_run_id, op.op_index)
        if key not in self.op_rows:
            self.op_rows[key] = {**vars(op), "args": deepcopy(op.args), "result": None, "result_hash": None,
                                 "status": "pending", "error_code": None, "error_message": None,
                                 "duration_ms": None, "created_at": _now(), "completed_at": None}
        return dict(self.op_rows[key])

    def note_error(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str) -> None:
        row = self.op_rows[(run_id, op_index)]
        if row["status"] == "pending":
            row.update(error_code=code, error_message=message)

    def _finish(self, run_id: str, op_index: int, **values: Any) -> dict[str, Any]:
        row = self.op_rows[(run_id, op_index)]
        if row["status"] == "pending":
            row.update(values, completed_at=_now())
        return dict(row)

    def complete_op(self, tenant_id: str, run_id: str, op_index: int, result: Mapping[str, Any],
                    result_hash: str, duration_ms: int) -> dict[str, Any]:
        return self._finish(run_id, op_index, status="completed", result=deepcopy(dict(result)),
                            result_hash=result_hash, duration_ms=duration_ms, error_code=None, error_message=None)

    def fail_op(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str,
                duration_ms: int | None) -> dict[str, Any]:
        return self._finish(run_id, op_index, status="failed", error_code=code, error_message=message,
                            duration_ms=duration_ms)

    def summary(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        ops = self.ops(tenant_id, run_id)
        return {"total_duration_ms": sum(op["duration_ms"] or 0 for op in ops)} if ops else None

    def record_replay(self, replay: Any) -> None:
        self.replays.append(replay)


class MemoryQueue:
    """A WorkflowQueue that keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = None
    text: str | None = None


class FakeSkill:
    """A skill whose effect is counted and whose result echoes its args; one result per idempotency key.

    `fail_with` raises (once per queued error) before the effect; `deterministic` is what replay reads.
    """

    Input: ClassVar[type[BaseModel]] = EchoInput

    def __init__(self, name: str, version: str = "1.0.0", deterministic: bool = True) -> None:
        self.name, self.version, self.deterministic = name, version, deterministic
        self.effects: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.fail_with: list[SkillError] = []
        self.calls = 0

    def execute(self, args: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        self.calls += 1
        if self.fail_with:
            raise self.fail_with.pop(0)
        key = ctx.idempotency_key
        if key in self.stored:
            return dict(self.stored[key])
        self.effects.append(dict(args))
        result = {"echo": dict(args), "n": len(self.effects)}
        self.stored[key] = result
        return dict(result)

    def call_budget_s(self) -> float:
        return 1.0


class FakeSkills:
    """A SkillSource of FakeSkills by name."""

    def __init__(self, *skills: FakeSkill) -> None:
        self.skills = {skill.name: skill for skill in skills}

    def get(self, name: str) -> FakeSkill:
        if name not in self.skills:
            raise UnknownSkill(f"unknown skill {name!r}")
        return self.skills[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.skills)

    def calls(self) -> int:
        return sum(skill.calls for skill in self.skills.values())
