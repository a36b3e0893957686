"""The loop around the bridges, on in-memory stores: the runner, the registry, ingest, checkpoints and the services."""

from __future__ import annotations

import importlib
import inspect
from datetime import timedelta
from typing import Any

import pytest
from fakes.driver import MemoryLoop

from incident_loop.loop import registry
from incident_loop.loop.checkpoints import resolve_checkpoint
from incident_loop.loop.errors import Conflict, NotFound, NotReady
from incident_loop.loop.policies import confirm_policy, policies, regret_policy
from incident_loop.loop.routing import report_kpi, routing_view
from incident_loop.loop.stage import WrongStage, stage_handler
from incident_loop.loop.status import graduation
from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage, PolicyMode
from incident_loop.schemas.loop.requests import PolicyFeedback, ResolveCheckpoint
from incident_loop.schemas.loop.status import LoopStatus
from incident_loop.settings import Settings
from incident_loop.stores.queues import QueueUnavailable, QueueUnconfigured


def approved_loop(loop: MemoryLoop, n: int = 1) -> str:
    """The n-th sibling, its recovery approved, its loop run to the end."""
    incident = loop.report(n)
    loop.drain()
    if loop.status(incident).pending_checkpoints:
        loop.resolve(incident)
        loop.drain()
    return incident


# ----------------------------------------------------------------- the registry


def test_the_registry_chains_every_stage_once_in_the_loops_order() -> None:
    chain, at = [], registry.first()
    while True:
        chain.append(at.stage)
        if at.next is None:
            break
        at = registry.stage(at.next)
    assert [registry.OPENING, *chain] == [s for s in LoopStage.ordered()]
    assert [registry.previous(s) for s in chain] == [registry.OPENING, *chain[:-1]]


def test_every_stage_names_a_bridge_module_with_its_bridge_and_its_batch_read() -> None:
    """The registry imports a bridge by its module's name when first asked: a typo or a renamed function
    must fail here, not at the first message of that stage's function (nor switch read-ahead off unseen)."""
    for entry in registry.STAGES:
        module = importlib.import_module(f"incident_loop.loop.{entry.module}")
        assert entry.bridge is getattr(module, entry.module), entry.stage
        assert callable(entry.bridge) and callable(entry.read_ahead), entry.stage
        assert list(inspect.signature(entry.bridge).parameters) == ["uow", "env"], entry.stage
        assert list(inspect.signature(entry.read_ahead).parameters) == ["uow", "envs"], entry.stage


def test_each_stage_result_has_its_field_in_loop_status() -> None:
    for entry in registry.STAGES:
        assert entry.result.status_field in LoopStatus.model_fields, entry.stage
        assert entry.result.model.__name__ in str(LoopStatus.model_fields[entry.result.status_field].annotation)


def test_a_stage_is_fed_by_the_queue_its_entry_names() -> None:
    settings = Settings(recovery_queue_url="https://sqs/recovery", pattern_queue_url=None)
    assert registry.queue_url_for(LoopStage.RECOVERY_SUGGESTED, settings) == "https://sqs/recovery"
    with pytest.raises(QueueUnconfigured):
        registry.queue_url_for(LoopStage.PATTERN_MATCHED, settings)
    with pytest.raises(QueueUnconfigured):  # no function performs it: there is no queue to feed
        registry.queue_url_for(LoopStage.INCIDENT_CREATED, settings)


def test_no_handler_is_made_for_a_stage_no_bridge_performs() -> None:
    with pytest.raises(KeyError):
        stage_handler(LoopStage.INCIDENT_CREATED)


# ----------------------------------------------------------------- ingest and the runner


def test_a_repeated_report_is_one_incident_and_re_sends_its_first_hand_off(loop: MemoryLoop) -> None:
    first, second = loop.report(1), loop.report(1)

    assert first == second and len(loop.uow.incidents.rows) == 1
    assert [e.stage for e in loop.uow.queues.sent] == [registry.first().stage] * 2
    assert len(loop.failures) == 2  # type: ignore[attr-defined]  # the failure persisted again, same id
    assert loop.failures[0].failure_id == loop.failures[1].failure_id  # type: ignore[attr-defined]


def test_a_redelivered_stage_replays_its_hand_off_and_changes_nothing(loop: MemoryLoop) -> None:
    loop.report(1)
    envelope = loop.uow.queues.sent[0]
    loop.deliver()
    before = (loop.uow.patterns.index.count(next(iter(loop.uow.patterns.rows))), len(loop.uow.loop.events))

    loop.uow.queues.sent[:] = [envelope]
    loop.deliver()

    assert (loop.uow.patterns.index.count(next(iter(loop.uow.patterns.rows))), len(loop.uow.loop.events)) == before
    assert [(e.stage, e.payload) for e in loop.uow.queues.sent] == [
        (LoopStage.RECOVERY_SUGGESTED, {"pattern_id": next(iter(loop.uow.patterns.rows)), "occurrence_count": 1,
                                         "match_confidence": 0.5})]


def test_a_stage_whose_predecessor_has_not_completed_waits(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    early = loop.uow.queues.sent[0].next(LoopStage.RECOVERY_SUGGESTED, pattern_id="p", occurrence_count=1)
    loop.uow.queues.sent.insert(0, early)

    with pytest.raises(NotReady, match="waits for pattern_matched"):
        loop.deliver()
    assert loop.status(incident).stages_completed == ["incident_created"]


def test_a_misrouted_message_is_refused(loop: MemoryLoop) -> None:
    loop.report(1)
    with pytest.raises(WrongStage):
        loop.deliver(LoopStage.ROUTING_ADJUSTED)


def test_a_stage_that_fails_half_way_leaves_nothing_behind(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.drain()
    loop.resolve(incident)
    loop.deliver()  # policy_generated

    def broken(*args: Any) -> None:
        raise RuntimeError("the connection dropped")

    loop.uow.incidents.set_status = broken  # type: ignore[method-assign]  # after the adjustment is written
    with pytest.raises(RuntimeError):
        loop.deliver()
    del loop.uow.incidents.set_status
    assert loop.uow.routing.rows == {} and loop.uow.queues.sent == []
    assert not loop.status(incident).is_complete


def test_a_hand_off_lost_after_commit_is_sent_again_on_redelivery(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    envelope = loop.uow.queues.sent[0]

    def down(_: Any) -> None:
        raise QueueUnavailable("the recovery queue is gone")

    loop.uow.queues.send = down  # type: ignore[method-assign]
    with pytest.raises(QueueUnavailable):
        loop.deliver()
    del loop.uow.queues.send  # the queue is back
    assert loop.status(incident).stages_completed == ["incident_created", "pattern_matched"]
    loop.uow.queues.sent.append(envelope)  # SQS delivers the record again
    loop.deliver()

    assert [e.stage for e in loop.uow.queues.sent] == [LoopStage.RECOVERY_SUGGESTED]
    assert len(loop.uow.loop.events) == 2  # incident_created, pattern_matched: recorded once


# ----------------------------------------------------------------- checkpoints


def test_approving_resumes_the_loop_at_the_stage_after_the_checkpoints(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.drain()
    answer = loop.resolve(incident, "modify", modifications={"max_retries": 5})

    [resumed] = loop.uow.queues.sent
    assert answer["resumed_at"] == registry.stage(LoopStage.RECOVERY_SUGGESTED).next == resumed.stage
    assert resumed.payload == {"recovery_id": answer["recovery"]["recovery_id"]}
    assert answer["recovery"]["status"] == "approved" and answer["recovery"]["action_params"]["max_retries"] == 5
    status = loop.status(incident)
    assert not status.is_blocked and status.pending_checkpoints == []
    assert "recovery_suggested" in status.stages_completed
    loop.uow.queues.sent.clear()
    with pytest.raises(Conflict):
        resolve_checkpoint(loop.tenant, answer["checkpoint"]["checkpoint_id"],
                           ResolveCheckpoint(resolution="approve", resolved_by="op2"), uow=loop.uow)
    assert loop.uow.queues.sent == []


def test_rejecting_ends_the_loop_with_the_reason(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.drain()
    answer = loop.resolve(incident, "reject", reason="not transient")

    status = loop.status(incident)
    assert answer["resumed_at"] is None and loop.uow.queues.sent == []
    assert status.failure_state == LoopFailureState.RECOVERY_REJECTED and not status.is_complete
    assert status.recovery_suggestion.rejection_reason == "not transient"  # type: ignore[union-attr]
    assert "recovery_suggested" in status.stages_failed and "recovery_suggested" not in status.stages_completed
    assert loop.incident(incident)["status"] == "rejected"


def test_an_unknown_checkpoint_is_not_found(loop: MemoryLoop) -> None:
    with pytest.raises(NotFound):
        resolve_checkpoint(loop.tenant, "chk_none", ResolveCheckpoint(resolution="approve", resolved_by="op"),
                           uow=loop.uow)


# ----------------------------------------------------------------- policies, routing, graduation


def test_a_confirmation_activates_and_regrets_past_the_threshold_demote(loop: MemoryLoop) -> None:
    approved_loop(loop)
    [policy] = policies(loop.tenant, uow=loop.uow)
    by = PolicyFeedback(by="op")

    assert confirm_policy(loop.tenant, policy.policy_id, by, uow=loop.uow)["activated"] is True
    assert [p.policy_id for p in policies(loop.tenant, PolicyMode.ACTIVE, uow=loop.uow)] == [policy.policy_id]
    demoted = [regret_policy(loop.tenant, policy.policy_id, by, uow=loop.uow)["demoted"] for _ in range(3)]
    assert demoted == [False, False, True]
    assert policies(loop.tenant, PolicyMode.ACTIVE, uow=loop.uow) == []
    with pytest.raises(NotFound):
        confirm_policy("tenant-b", policy.policy_id, by, uow=loop.uow)  # another tenant's policy


def test_a_kpi_regression_past_the_threshold_rolls_the_adjustment_back(loop: MemoryLoop) -> None:
    loop.uow.routing.record_kpi(loop.tenant, "agent-1", 0.9)
    incident = approved_loop(loop)
    adjustment = loop.status(incident).routing_adjustment
    assert adjustment is not None

    assert report_kpi(loop.tenant, "agent-1", 0.85, uow=loop.uow)["rolled_back"] == []  # 5.6 %: within 10 %
    assert report_kpi(loop.tenant, "agent-1", 0.7, uow=loop.uow)["rolled_back"] == [adjustment.adjustment_id]
    view = routing_view(loop.tenant, "agent-1", uow=loop.uow)
    assert (view["active_adjustments"], view["total_effective_magnitude"]) == (0, 0.0)


def test_routing_decays_to_nothing_over_its_decay_days(loop: MemoryLoop) -> None:
    incident = approved_loop(loop)
    adjustment = loop.status(incident).routing_adjustment
    assert adjustment is not None
    halfway = adjustment.created_at + timedelta(days=adjustment.decay_days / 2)

    assert routing_view(loop.tenant, "agent-1", halfway, uow=loop.uow)["total_effective_magnitude"] == (
        pytest.approx(adjustment.magnitude / 2))
    later = adjustment.created_at + timedelta(days=adjustment.decay_days)
    assert routing_view(loop.tenant, "agent-1", later, uow=loop.uow)["total_effective_magnitude"] == 0


def test_graduation_needs_a_complete_loop_an_active_policy_and_a_prevention(loop: MemoryLoop) -> None:
    first = approved_loop(loop)
    assert [g["passed"] for g in graduation(loop.tenant, uow=loop.uow)["gates"]] == [True, False, False]
    [policy] = policies(loop.tenant, uow=loop.uow)
    confirm_policy(loop.tenant, policy.policy_id, PolicyFeedback(by="op"), uow=loop.uow)
    blocked = loop.report(2)
    loop.drain()

    gates = graduation(loop.tenant, uow=loop.uow)
    assert gates["graduated"] is True
    assert gates["gates"][0]["evidence"]["incident_id"] == first
    assert gates["gates"][2]["evidence"]["blocked_incident_id"] == blocked
    assert graduation("tenant-b", uow=loop.uow)["passed"] == 0


def test_a_graduated_tenant_stays_graduated_when_its_policy_is_demoted(loop: MemoryLoop) -> None:
    """The gates are history: a loop completed, a policy activated, a prevention recorded. A demotion (regrets, a
    pattern merge) clears the policy's activated_at; "a policy activated" read it, and the tenant fell back to 2/3."""
    approved_loop(loop)
    [policy] = policies(loop.tenant, uow=loop.uow)
    confirm_policy(loop.tenant, policy.policy_id, PolicyFeedback(by="op"), uow=loop.uow)
    loop.report(2)
    loop.drain()
    assert graduation(loop.tenant, uow=loop.uow)["graduated"] is True
    for _ in range(3):
        regret_policy(loop.tenant, policy.policy_id, PolicyFeedback(by="op"), uow=loop.uow)
    assert policies(loop.tenant, uow=loop.uow)[0].activated_at is None  # demoted

    gates = graduation(loop.tenant, uow=loop.uow)
    assert gates["graduated"] is True
    assert gates["gates"][1]["evidence"] == {"policy_id": policy.policy_id}
