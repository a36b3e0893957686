"""The replay verifier on in-memory fakes: recorded outputs substituted, no skill called, every check can fail."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.workflows import FakeSkill, FakeSkills, MemoryAudit, MemoryQueue

from incident_loop.loop.errors import Conflict, NotFound
from incident_loop.schemas.workflows import WorkflowDefinition
from incident_loop.skills.errors import SkillInputError
from incident_loop.skills.hashing import canonical_hash
from incident_loop.workflows.replay import replay_workflow
from incident_loop.workflows.runner import run_workflow
from incident_loop.workflows.service import submit_workflow

TENANT = "tenant-a"
STEPS = [
    {"skill": "remember", "args": {"value": {"incident": "inc-1"}}},
    {"skill": "remember", "args": {"value": "${steps.0.result.echo.value}"}},
    {"skill": "notify", "args": {"text": "n=${steps.1.result.n}"}, "transient": True},
    {"skill": "remember", "args": {"value": "${steps.2.result.n}"}},
]


@pytest.fixture
def world() -> Any:
    class World:
        remember, notify = FakeSkill("remember"), FakeSkill("notify", deterministic=False)
        skills = FakeSkills(remember, notify)
        audit, queue = MemoryAudit(), MemoryQueue()

        def finished_run(self, steps: list[dict[str, Any]] = STEPS) -> str:
            definition = WorkflowDefinition.model_validate({"steps": steps})
            accepted = submit_workflow(definition, TENANT, audit=self.audit, queue=self.queue, skills=self.skills)
            run_workflow(self.queue.sent[-1], audit=self.audit, skills=self.skills)
            return accepted.workflow_run_id

        def replay(self, run_id: str) -> Any:
            return replay_workflow(TENANT, run_id, audit=self.audit, skills=self.skills)

        def op(self, run_id: str, index: int) -> dict[str, Any]:
            return self.audit.op_rows[(run_id, index)]

    return World()


def test_a_completed_run_verifies_without_calling_any_skill(world: Any) -> None:
    run_id = world.finished_run()
    calls = world.skills.calls()

    report = world.replay(run_id)

    assert world.skills.calls() == calls
    assert (report.status, report.severity, report.skills_executed) == ("verified", "INFO", 0)
    assert (report.ops_total, report.ops_verified, report.ops_failed, report.ops_skipped) == (4, 3, 0, 1)
    assert report.first_mismatch_op_index is None and report.mismatches == []
    assert report.text.startswith(f"INFO: replay of workflow run {run_id} verified")
    [stored] = world.audit.replays
    assert (stored.status, stored.ops_verified, stored.mode, stored.tenant_id) == ("verified", 3, "recorded_outputs",
                                                                                 TENANT)


def test_a_result_changed_after_the_fact_fails_replay_at_that_op(world: Any) -> None:
    run_id = world.finished_run()
    world.op(run_id, 1)["result"] = {"echo": {"value": {"incident": "inc-forged"}}, "n": 2}

    report = world.replay(run_id)

    assert (report.status, report.severity, report.first_mismatch_op_index) == ("mismatch", "CRITICAL", 1)
    assert [m.check for m in report.mismatches] == ["result_hash"]
    assert report.text.startswith(f"CRITICAL: replay of workflow run {run_id} MISMATCH at op 1 (remember): "
                                  "result_hash")
    assert world.audit.replays[0].mismatch_diff["op_index"] == 1


def test_a_result_an_argument_was_computed_from_fails_the_later_ops_args_hash(world: Any) -> None:
    run_id = world.finished_run()
    forged = {"echo": {"value": {"incident": "inc-forged"}}, "n": 1}
    world.op(run_id, 0)["result"] = forged
    world.op(run_id, 0)["result_hash"] = canonical_hash(forged)  # rewritten too: op 0 looks intact on its own

    report = world.replay(run_id)

    assert report.first_mismatch_op_index == 1
    assert [(m.op_index, m.check) for m in report.mismatches] == [(1, "args_hash")]


def test_recorded_arguments_that_no_longer_match_their_hash_fail_args_integrity(world: Any) -> None:
    run_id = world.finished_run()
    world.op(run_id, 0)["args"] = {"value": {"incident": "inc-other"}}

    report = world.replay(run_id)

    assert [(m.op_index, m.check) for m in report.mismatches] == [(0, "args_integrity")]


def test_a_new_skill_version_or_another_skill_at_an_index_is_a_mismatch(world: Any) -> None:
    run_id = world.finished_run()
    world.remember.version = "1.1.0"
    world.op(run_id, 3)["op_type"] = "notify"

    report = world.replay(run_id)

    checks = {(m.op_index, m.check) for m in report.mismatches}
    assert {(0, "skill_version"), (1, "skill_version"), (3, "op_type")} <= checks
    assert report.first_mismatch_op_index == 0


def test_a_missing_op_and_an_op_beyond_the_definition_break_the_sequence(world: Any) -> None:
    run_id = world.finished_run()
    extra = dict(world.op(run_id, 3), op_index=4)
    world.audit.op_rows[(run_id, 4)] = extra
    del world.audit.op_rows[(run_id, 1)]

    report = world.replay(run_id)

    assert [(m.op_index, m.check) for m in report.mismatches if m.check == "sequence"] == [(1, "sequence"),
                                                                                          (4, "sequence")]
    assert report.ops_total == 4


def test_a_transient_op_is_skipped_even_when_its_record_changed(world: Any) -> None:
    run_id = world.finished_run()
    world.op(run_id, 2)["args"] = {"text": "rewritten"}

    report = world.replay(run_id)

    assert report.status == "verified" and 2 not in [m.op_index for m in report.mismatches]


def test_the_steps_after_a_failed_op_are_skipped_not_missing(world: Any) -> None:
    world.remember.fail_with.append(SkillInputError("bad"))
    run_id = world.finished_run()

    report = world.replay(run_id)

    assert report.status == "verified"
    assert (report.ops_verified, report.ops_skipped) == (1, 3)


def test_an_unfinished_run_cannot_be_replayed_and_another_tenant_finds_nothing(world: Any) -> None:
    definition = WorkflowDefinition.model_validate({"steps": STEPS})
    queued = submit_workflow(definition, TENANT, audit=world.audit, queue=world.queue, skills=world.skills)

    with pytest.raises(Conflict, match="queued"):
        world.replay(queued.workflow_run_id)
    with pytest.raises(NotFound):
        replay_workflow("tenant-b", world.finished_run(), audit=world.audit, skills=world.skills)
