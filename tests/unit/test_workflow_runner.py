"""The workflow runner on in-memory fakes: every op audited, a crash or redelivery never repeats an effect."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.workflows import FakeSkill, FakeSkills, MemoryAudit, MemoryQueue

from incident_loop.loop.errors import Conflict
from incident_loop.schemas.workflows import WorkflowDefinition, WorkflowMessage
from incident_loop.skills.deterministic import idempotency_key
from incident_loop.skills.errors import ExternalError, SkillInputError
from incident_loop.skills.hashing import canonical_hash
from incident_loop.workflows.errors import RunBusy, RunNotStored
from incident_loop.workflows.replay import replay_workflow
from incident_loop.workflows.runner import run_workflow
from incident_loop.workflows.service import submit_workflow

TENANT = "tenant-a"
STEPS = [
    {"skill": "remember", "args": {"value": {"incident": "inc-1", "text": "timeout"}}},
    {"skill": "notify", "args": {"text": "about ${steps.0.result.echo.value.incident}"}},
    {"skill": "remember", "args": {"value": "${steps.1.result.n}"}, "transient": True},
]


class World:
    def __init__(self, steps: list[dict[str, Any]] = STEPS) -> None:
        self.remember, self.notify = FakeSkill("remember"), FakeSkill("notify", version="2.1.0", deterministic=False)
        self.skills = FakeSkills(self.remember, self.notify)
        self.audit, self.queue = MemoryAudit(), MemoryQueue()
        accepted = submit_workflow(WorkflowDefinition.model_validate({"steps": steps}), TENANT, audit=self.audit,
                                   queue=self.queue, skills=self.skills)
        self.run_id = accepted.workflow_run_id
        [self.message] = self.queue.sent

    def run(self, message: WorkflowMessage | None = None, **kwargs: Any) -> dict[str, Any]:
        return run_workflow(message or self.message, audit=self.audit, skills=self.skills, queue=self.queue,
                            **kwargs)

    def ops(self) -> list[dict[str, Any]]:
        return self.audit.ops(TENANT, self.run_id)

    def status(self) -> str:
        return str(self.audit.runs[self.run_id]["status"])


def test_a_run_records_every_op_with_its_hashes_key_version_and_tenant() -> None:
    world = World()

    outcome = world.run()

    assert outcome["status"] == "completed" and world.status() == "completed"
    ops = world.ops()
    assert [(op["op_index"], op["op_type"], op["status"]) for op in ops] == [
        (0, "remember", "completed"), (1, "notify", "completed"), (2, "remember", "completed")]
    notify = ops[1]
    assert notify["args"] == {"text": "about inc-1"}  # the reference resolved from op 0's recorded result
    assert notify["args_hash"] == canonical_hash({"text": "about inc-1"})
    assert notify["result_hash"] == canonical_hash(notify["result"])
    assert notify["idempotency_key"] == idempotency_key(world.run_id, 1)
    assert (notify["skill_version"], notify["tenant_id"], notify["transient"]) == ("2.1.0", TENANT, False)
    assert ops[2]["args"] == {"value": 1} and ops[2]["transient"] is True
    assert world.audit.leases[world.run_id] is None


def test_a_redelivered_message_after_the_run_finished_calls_no_skill() -> None:
    world = World()
    world.run()
    calls = world.skills.calls()

    again = world.run()

    assert again["status"] == "completed"
    assert world.skills.calls() == calls


def test_a_crash_between_the_effect_and_its_record_resumes_without_repeating_the_effect(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    real = world.audit.complete_op

    def crash_on_op_1(tenant_id: str, run_id: str, op_index: int, *args: Any) -> Any:
        if op_index == 1:
            raise RuntimeError("the container died")
        return real(tenant_id, run_id, op_index, *args)

    monkeypatch.setattr(world.audit, "complete_op", crash_on_op_1)
    with pytest.raises(RuntimeError):
        world.run()
    assert [op["status"] for op in world.ops()] == ["completed", "pending"]
    monkeypatch.setattr(world.audit, "complete_op", real)
    world.audit.leases[world.run_id] = None  # the crashed worker's lease ran out

    world.run()

    assert world.status() == "completed"
    assert world.remember.calls == 2 and world.notify.calls == 2  # op 1 ran again, op 0 did not
    assert len(world.notify.effects) == 1  # under the same key: the stored result, no second effect


def test_a_non_retryable_error_fails_the_op_and_the_run_and_stops_it() -> None:
    world = World()
    world.notify.fail_with.append(SkillInputError("notify: text is too long"))

    outcome = world.run()

    assert outcome == {"workflow_run_id": world.run_id, "status": "failed", "error_code": "invalid_input"}
    ops = world.ops()
    assert [op["status"] for op in ops] == ["completed", "failed"]
    assert (ops[1]["error_code"], ops[1]["error_message"]) == ("invalid_input", "notify: text is too long")
    assert world.audit.runs[world.run_id]["error_message"] == "op 1 (notify): notify: text is too long"
    assert world.remember.calls == 1  # step 2 never ran


def test_a_skill_raising_something_other_than_a_skill_error_fails_its_op_once_without_its_text() -> None:
    """A tenant's token holding a line break makes http.client raise ValueError: the op stayed pending, the run
    `running`, and every one of the queue's ten deliveries called the skill again (repeating any effect made before
    the raise) until the message was dead-lettered. The op fails, named by the error's type, not its text."""
    world = World()
    world.notify.fail_with.append(ValueError("Invalid header value b'Bearer xoxb-secret\\n'"))  # type: ignore[arg-type]

    outcome = world.run()

    assert outcome == {"workflow_run_id": world.run_id, "status": "failed", "error_code": "internal_error"}
    failed = world.ops()[1]
    assert (failed["status"], failed["error_code"]) == ("failed", "internal_error")
    assert "ValueError" in failed["error_message"] and "xoxb" not in failed["error_message"]
    assert world.run()["status"] == "failed" and world.notify.calls == 1  # a redelivery calls nothing again


def test_a_stored_definition_that_no_longer_validates_fails_the_run_instead_of_every_delivery() -> None:
    """A run accepted under other bounds (or a definition edited where it is stored) raised a ValidationError on every
    delivery, no SkillError: the run stayed `running` until its message was dead-lettered."""
    world = World()
    world.audit.runs[world.run_id]["definition"] = {"steps": [{"skill": "remember", "args": {}, "extra": 1}]}

    outcome = world.run()

    assert outcome == {"workflow_run_id": world.run_id, "status": "failed", "error_code": "invalid_definition"}
    assert world.status() == "failed" and world.remember.calls == 0
    assert "no longer validates" in world.audit.runs[world.run_id]["error_message"]
    with pytest.raises(Conflict, match="cannot be replayed"):  # a 409, not a 500 that logs the definition
        replay_workflow(TENANT, world.run_id, audit=world.audit, skills=world.skills)


def test_a_retryable_error_is_noted_and_raised_and_the_redelivery_finishes_the_run() -> None:
    world = World()
    world.notify.fail_with.append(ExternalError("503 from the service", code="http_503", retryable=True))

    with pytest.raises(ExternalError):
        world.run()
    pending = world.ops()[1]
    assert (pending["status"], pending["error_code"]) == ("pending", "http_503")
    assert world.status() == "running"

    world.run()

    assert world.status() == "completed" and len(world.notify.effects) == 1
    assert world.ops()[1]["error_code"] is None


def test_a_second_worker_waits_while_the_first_holds_the_run() -> None:
    world = World()
    world.audit.leases[world.run_id] = "another-worker"

    with pytest.raises(RunBusy):
        world.run()
    assert world.skills.calls() == 0


def test_a_message_naming_another_tenants_run_finds_nothing() -> None:
    world = World()

    with pytest.raises(RunNotStored):
        world.run(world.message.model_copy(update={"tenant_id": "tenant-b"}))
    assert world.skills.calls() == 0


def test_an_unresolvable_reference_fails_its_op_with_the_unresolved_arguments() -> None:
    world = World([{"skill": "remember", "args": {"value": 1}},
                   {"skill": "notify", "args": {"text": "${steps.0.result.nothing}"}}])

    world.run()

    failed = world.ops()[1]
    assert (failed["status"], failed["error_code"]) == ("failed", "unresolved_reference")
    assert failed["args"] == {"text": "${steps.0.result.nothing}"} and world.notify.calls == 0


def test_a_run_short_of_time_continues_in_a_new_message_after_at_least_one_op() -> None:
    world = World()
    leases_at_send: list[str | None] = []
    send = world.queue.send
    world.queue.send = lambda message: (leases_at_send.append(world.audit.leases.get(world.run_id)),  # type: ignore
                                        send(message))

    first = world.run(time_left_ms=lambda: 10)  # less than any op's budget (FakeSkill: 1 s)

    assert first == {"workflow_run_id": world.run_id, "status": "continued", "next_op_index": 1, "segment": 1}
    assert [op["op_index"] for op in world.ops()] == [0]
    nxt = world.queue.sent[-1]
    assert (nxt.workflow_run_id, nxt.segment) == (world.run_id, 1)
    assert leases_at_send == [None]  # released before the next segment could start

    while world.status() != "completed":
        world.run(world.queue.sent[-1], time_left_ms=lambda: 10)

    assert [s.segment for s in world.queue.sent] == [0, 1, 2]
    assert world.remember.calls == 2 and world.notify.calls == 1


def test_the_view_of_a_run_and_of_one_op_stays_within_its_budget_and_says_what_it_left_out() -> None:
    """GET /workflows/{id} and /ops/{n} (workflows/service.py) under a small budget, as under Lambda's 6 MB: args and
    results inlined while they fit, from the first that would not on left out and `omitted`; one op whose args
    resolved to more than fits (a step naming an earlier result twice) is left out on its own route too."""
    from incident_loop.workflows.service import op_view, workflow_view

    big = "x" * 3000
    world = World([{"skill": "remember", "args": {"value": big}},
                   {"skill": "remember", "args": {"value": ["${steps.0.result.echo.value}",
                                                            "${steps.0.result.echo.value}"]}},
                   {"skill": "notify", "args": {"text": "small"}}])
    world.run()

    run = workflow_view(TENANT, world.run_id, audit=world.audit, budget=8000)
    assert [op.omitted for op in run.ops] == [False, True, True]  # op 2 is small, but after the cut
    assert run.ops[0].args == {"value": big} and run.ops[1].args is None and run.ops[2].result is None
    assert op_view(TENANT, world.run_id, 2, audit=world.audit, budget=8000).args == {"text": "small"}
    whole = op_view(TENANT, world.run_id, 1, audit=world.audit, budget=8000)  # 4 x 3000 bytes: over
    assert whole.omitted and whole.args is None and whole.result_hash is not None
