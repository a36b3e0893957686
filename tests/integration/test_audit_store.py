"""The PostgreSQL audit store under the runner's rules (as the function role, row-level security on)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fakes.workflows import FakeSkill, FakeSkills, MemoryQueue

from incident_loop.schemas.workflows import WorkflowDefinition
from incident_loop.stores.audit import PostgresAudit
from incident_loop.workflows.ports import NewOp
from incident_loop.workflows.replay import replay_workflow
from incident_loop.workflows.runner import run_workflow
from incident_loop.workflows.service import submit_workflow


class Numbers(FakeSkill):
    """A skill whose result holds numbers JSONB writes back differently (1e+20 -> 100000000000000000000)."""

    def execute(self, args: Any, ctx: Any) -> dict[str, Any]:
        super().execute(args, ctx)
        return {"big": 1e20, "small": 1.25e-07, "negative_zero": -0.0, "third": 1 / 3}


def _submit(audit: PostgresAudit, tenant: str, skills: FakeSkills, steps: list[dict[str, Any]]) -> tuple[str, Any]:
    queue = MemoryQueue()
    accepted = submit_workflow(WorkflowDefinition.model_validate({"steps": steps}), tenant, audit=audit, queue=queue,
                               skills=skills)
    return accepted.workflow_run_id, queue.sent[0]


def test_hashes_are_of_the_values_as_stored_so_a_replay_of_odd_numbers_verifies(conn: Any, tenant: str) -> None:
    audit, skills = PostgresAudit(conn), FakeSkills(Numbers("numbers"), FakeSkill("echo"))
    run_id, message = _submit(audit, tenant, skills, [{"skill": "numbers"},
                                                      {"skill": "echo", "args": {"value": "${steps.0.result}"}}])

    assert run_workflow(message, audit=audit, skills=skills)["status"] == "completed"
    report = replay_workflow(tenant, run_id, audit=audit, skills=skills)

    assert (report.status, report.ops_verified) == ("verified", 2), report.mismatches


def test_a_second_claim_of_an_op_finds_the_first_and_only_a_pending_op_takes_an_outcome(conn: Any, tenant: str) -> None:
    audit, skills = PostgresAudit(conn), FakeSkills(FakeSkill("echo"))
    run_id, _ = _submit(audit, tenant, skills, [{"skill": "echo"}])
    op = NewOp(f"{run_id}.0", run_id, 0, "echo", "1.0.0", {}, "sha256:x", False, "wf:key", tenant)

    with audit.begin(tenant):
        first = audit.claim_op(op)
        again = audit.claim_op(NewOp(f"{run_id}.other", run_id, 0, "echo", "1.0.0", {}, "sha256:x", False, "k", tenant))
        done = audit.complete_op(tenant, run_id, 0, {"n": 1}, "sha256:r", 5)
        late = audit.fail_op(tenant, run_id, 0, "http_500", "too late", 9)

    assert again["op_id"] == first["op_id"] == f"{run_id}.0"
    assert (done["status"], late["status"], late["result"], late["error_code"]) == ("completed", "completed",
                                                                                   {"n": 1}, None)


def test_one_worker_holds_a_run_at_a_time(conn: Any, tenant: str) -> None:
    audit, skills = PostgresAudit(conn), FakeSkills(FakeSkill("echo"))
    run_id, _ = _submit(audit, tenant, skills, [{"skill": "echo"}])

    with audit.begin(tenant):
        first = audit.take_lease(tenant, run_id, "worker-1", 60)
        second = audit.take_lease(tenant, run_id, "worker-2", 60)
        renewed = audit.take_lease(tenant, run_id, "worker-1", 60)
        audit.release_lease(tenant, run_id, "worker-1")
        after_release = audit.take_lease(tenant, run_id, "worker-2", 60)
        audit.finish_run(tenant, run_id, "completed")
        after_finish = audit.take_lease(tenant, run_id, "worker-3", 60)

    assert (first, second, renewed, after_release, after_finish) == (True, False, True, True, False)
    with audit.begin(tenant):
        assert audit.run(tenant, run_id)["status"] == "completed"


def test_another_tenant_reads_no_run_and_cannot_lease_it(conn: Any, tenant: str) -> None:
    audit, skills = PostgresAudit(conn), FakeSkills(FakeSkill("echo"))
    run_id, _ = _submit(audit, tenant, skills, [{"skill": "echo"}])
    other = f"tenant-{uuid.uuid4().hex[:8]}"

    with audit.begin(other):
        assert audit.run(other, run_id) is None and audit.run(tenant, run_id) is None  # RLS hides it either way
        assert audit.take_lease(tenant, run_id, "worker", 60) is False
        assert audit.ops(tenant, run_id) == []


@pytest.mark.parametrize("value", [{"a": [1, 2.5, "x"]}, [], "text", 7])
def test_as_stored_gives_ordinary_json_back_unchanged(conn: Any, tenant: str, value: Any) -> None:
    audit = PostgresAudit(conn)
    with audit.begin(tenant):
        assert audit.as_stored(value) == value


def test_a_definitions_size_is_counted_as_jsonb_gives_it_back(conn: Any, tenant: str) -> None:
    """The bound the API checks is the one the runner checks again on the stored definition: the same size."""
    from incident_loop.schemas.workflows import _size

    value = {"n": [1e300, -2.5e20, 1e16, 1.5e-7, 1.0, 123.456, 1e-300, 1.7976931348623157e308, 7], "s": "é"}
    audit = PostgresAudit(conn)
    with audit.begin(tenant):
        back, signed = audit.as_stored(value), audit.as_stored([-0.0])

    def size(stored: Any) -> int:
        return len(json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode())

    assert _size(value) == size(back) and size(back) > 600  # the floats came back as integers of up to 309 digits
    assert _size([-0.0]) >= size(signed)  # jsonb drops the sign of -0.0: never more than counted


def test_an_idempotency_key_repeated_with_odd_numbers_is_the_same_run_and_a_changed_type_is_a_conflict(
        conn: Any, tenant: str) -> None:
    """The definitions are compared as jsonb: 1e23 reads back as 100000000000000000000000 yet is the same,
    and true is not 1 (Python's == would say the opposite of both)."""
    from incident_loop.loop.errors import Conflict

    audit, skills = PostgresAudit(conn), FakeSkills(FakeSkill("echo"))
    steps = [{"skill": "echo", "args": {"value": {"big": 1e23, "flag": True, "third": 1 / 3}}}]

    def submit(steps: list[dict[str, Any]]) -> Any:
        return submit_workflow(WorkflowDefinition.model_validate({"steps": steps}), tenant, audit=audit,
                               queue=MemoryQueue(), skills=skills, idempotency_key="client-odd-numbers")

    first, again = submit(steps), submit(steps)
    assert again.workflow_run_id == first.workflow_run_id
    with pytest.raises(Conflict):
        submit([{"skill": "echo", "args": {"value": {"big": 1e23, "flag": 1, "third": 1 / 3}}}])
