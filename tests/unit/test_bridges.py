"""Each bridge's rules on in-memory stores: no PostgreSQL, no SQS, the same bridges the functions run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.driver import MemoryLoop, timeout

from incident_loop.loop import adjust_routing as bridge4
from incident_loop.loop.errors import NotReady
from incident_loop.loop.match_pattern import match_pattern
from incident_loop.loop.routing import routing_view
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage, PolicyMode
from incident_loop.settings import Settings


def envelope(loop: MemoryLoop, incident_id: str, stage: LoopStage, **payload: Any) -> Envelope:
    return Envelope(incident_id=incident_id, tenant_id=loop.tenant, loop_id="loop_x", stage=stage,
                    correlation_id=incident_id, payload=payload)


def through_recovery(loop: MemoryLoop, n: int) -> str:
    """Report the n-th sibling and run it up to its recovery, approving it when a person must."""
    incident = loop.report(n)
    loop.drain()
    if loop.status(incident).pending_checkpoints:
        loop.resolve(incident)
    return incident


def policy_of(loop: MemoryLoop, incident: str) -> Any:
    policy = loop.status(incident).policy_rule
    assert policy is not None
    return policy


# ----------------------------------------------------------------- Bridge 1: incident -> failure catalog


def test_a_first_incident_starts_a_new_pattern_at_novel_confidence_and_hands_on(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.deliver()  # pattern_matched

    match = loop.status(incident).pattern_match_result
    assert match is not None and match.is_new_pattern
    assert (match.confidence, match.confidence_band) == (0.5, ConfidenceBand.NOVEL)
    assert match.match_details["match_type"] == "new" and match.match_details["category"] == "timeout"
    [handed] = loop.uow.queues.sent
    assert handed.stage == LoopStage.RECOVERY_SUGGESTED
    assert handed.payload == {"pattern_id": match.pattern_id, "occurrence_count": 1, "match_confidence": 0.5}


def test_a_sibling_joins_the_pattern_as_an_exact_hit_at_0_95(loop: MemoryLoop) -> None:
    first = through_recovery(loop, 1)
    loop.drain()
    second = loop.report(2)
    loop.deliver()

    match = loop.status(second).pattern_match_result
    assert match is not None and not match.is_new_pattern
    assert match.pattern_id == loop.status(first).pattern_match_result.pattern_id  # type: ignore[union-attr]
    assert (match.confidence, match.match_details["match_type"]) == (0.95, "exact")
    assert loop.uow.queues.sent[-1].payload["occurrence_count"] == 2


def test_an_incident_not_stored_for_the_tenant_is_not_ready_and_changes_nothing(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    stranger = envelope(loop, incident, LoopStage.PATTERN_MATCHED).model_copy(update={"tenant_id": "tenant-b"})

    loop.uow.queues.sent[0] = stranger
    with pytest.raises(NotReady):
        loop.deliver()
    assert loop.uow.patterns.rows == {} and loop.status(incident).stages_completed == ["incident_created"]


def test_a_shadow_policy_counts_what_it_would_block_once_per_incident_and_never_stops_the_loop(
        loop: MemoryLoop) -> None:
    first = through_recovery(loop, 1)
    loop.drain()
    second = loop.report(2)
    at_bridge_1 = loop.uow.queues.sent[0]
    with loop.uow.begin(loop.tenant):  # the bridge run twice for one incident (a replay that got this far)
        outcomes = [match_pattern(loop.uow, at_bridge_1) for _ in range(2)]
    loop.uow.queues.sent.clear()

    policy = policy_of(loop, first)
    stored = loop.uow.policies.get(loop.tenant, policy.policy_id)
    assert stored is not None and stored.mode == PolicyMode.SHADOW
    assert (stored.shadow_evaluations, stored.shadow_would_block) == (1, 1)  # route_away would block, once
    assert [o.failure_state for o in outcomes] == [None, None]
    assert [o.hand_off for o in outcomes] == [
        {"pattern_id": policy.source_pattern_id, "occurrence_count": 2, "match_confidence": 0.95}] * 2
    assert loop.uow.policies.preventions == [] and loop.incident(second)["status"] == "open"


def test_an_active_policy_prevents_the_next_sibling_and_records_it(loop: MemoryLoop) -> None:
    first = through_recovery(loop, 1)
    loop.drain()
    policy = policy_of(loop, first)
    stored = loop.uow.policies.get(loop.tenant, policy.policy_id)
    assert stored is not None
    stored.add_confirmation()  # one confirmation activates it (policy_confirmations_required = 1)
    loop.uow.policies.save(loop.tenant, stored)

    blocked = loop.report(2)
    ran = loop.drain()

    status = loop.status(blocked)
    assert ran == [LoopStage.PATTERN_MATCHED]  # no hand-off: the loop stops here
    assert status.failure_state == LoopFailureState.PREVENTED and not status.is_complete
    assert "pattern_matched" in status.stages_completed and status.stages_failed == []
    assert status.pattern_match_result.match_details["prevented_by"] == policy.policy_id  # type: ignore[union-attr]
    [prevention] = loop.uow.policies.preventions
    assert (prevention["blocked_incident_id"], prevention["original_incident_id"]) == (blocked, first)
    assert loop.incident(blocked)["status"] == "prevented"


# ----------------------------------------------------------------- Bridge 2: pattern -> recovery


def test_a_first_occurrence_waits_for_a_person_at_0_7(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    ran = loop.drain()

    status = loop.status(incident)
    recovery = status.recovery_suggestion
    assert ran == [LoopStage.PATTERN_MATCHED, LoopStage.RECOVERY_SUGGESTED]
    assert recovery is not None and (recovery.confidence, recovery.status) == (0.7, "pending")
    assert not recovery.auto_applicable and recovery.action_type == "retry_with_backoff"  # the timeout template
    assert status.is_blocked and status.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL
    assert status.stages_completed == ["incident_created", "pattern_matched"]
    [checkpoint] = loop.uow.checkpoints.of_tenant(loop.tenant, pending_only=True)
    assert status.pending_checkpoints == [checkpoint.checkpoint_id] and checkpoint.target_id == recovery.recovery_id


def test_confidence_rises_with_occurrences_and_the_third_is_auto_applied(loop: MemoryLoop) -> None:
    seen = []
    for n in (1, 2, 3):
        incident = through_recovery(loop, n)
        loop.drain()
        recovery = loop.status(incident).recovery_suggestion
        assert recovery is not None
        seen.append((recovery.confidence, recovery.auto_applicable, recovery.status))
    assert seen == [(0.7, False, "approved"), (0.8, False, "approved"), (0.9, True, "applied")]
    assert len(loop.uow.checkpoints.rows) == 2


def test_a_category_without_a_template_gets_a_generated_plan_that_escalates(loop: MemoryLoop) -> None:
    incident = loop.report(1, message="The flux capacitor of unit 7 refused to align", error_type="WeirdError")
    loop.drain()

    recovery = loop.status(incident).recovery_suggestion
    assert recovery is not None and recovery.suggestion_type == "generated"
    assert recovery.action_params == {"max_retries": 1, "escalate_on_failure": True, "error_type": "WeirdError"}


def test_a_recovery_for_a_pattern_not_stored_is_not_ready(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.deliver()
    loop.uow.queues.sent[0] = envelope(loop, incident, LoopStage.RECOVERY_SUGGESTED, pattern_id="pat_gone",
                                       occurrence_count=1)
    with pytest.raises(NotReady):
        loop.deliver()
    assert loop.uow.recoveries.rows == {}


# ----------------------------------------------------------------- Bridge 3: recovery -> policy


def test_every_new_policy_starts_in_shadow_even_from_an_auto_applied_recovery(loop: MemoryLoop) -> None:
    for n in (1, 2, 3):
        incident = through_recovery(loop, n)
        loop.drain()

    policy = policy_of(loop, incident)
    assert policy.mode == PolicyMode.SHADOW and policy.activated_at is None
    assert (policy.action, policy.category) == ("route_away", "routing")  # what the timeout category asks
    assert loop.status(incident).failure_state is None  # shadow mode is a detail, never a failure
    assert len(loop.uow.policies.rows) == 1  # one policy per pattern, reused by every sibling


def test_a_policy_waits_for_an_approved_recovery(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.drain()  # the recovery waits for a person
    loop.uow.queues.sent.append(envelope(loop, incident, LoopStage.POLICY_GENERATED, recovery_id="r"))
    loop.uow.loop.traces[incident]["stages_completed"].append("recovery_suggested")  # as if it had completed

    with pytest.raises(NotReady):
        loop.deliver()
    assert loop.uow.policies.rows == {}


# ----------------------------------------------------------------- Bridge 4: policy -> routing


def test_routing_moves_by_severity_completes_the_loop_and_keeps_the_kpi_baseline(loop: MemoryLoop) -> None:
    loop.uow.routing.record_kpi(loop.tenant, "agent-1", 0.9)
    incident = through_recovery(loop, 1)
    ran = loop.drain()

    status = loop.status(incident)
    adjustment = status.routing_adjustment
    assert ran == [LoopStage.POLICY_GENERATED, LoopStage.ROUTING_ADJUSTED]
    assert adjustment is not None and adjustment.magnitude == pytest.approx(-0.15)  # high: 3 x 0.05
    assert (adjustment.adjustment_type, adjustment.kpi_baseline) == ("weight_shift", 0.9)
    assert status.is_complete and loop.uow.queues.sent == []
    assert loop.incident(incident)["status"] == "learned"


def test_routing_never_moves_past_max_delta(loop: MemoryLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge4, "get_settings", lambda: Settings(routing_max_delta=0.1))
    incident = through_recovery(loop, 1)
    loop.drain()

    adjustment = loop.status(incident).routing_adjustment
    assert adjustment is not None and adjustment.magnitude == pytest.approx(-0.1)  # -0.15, bounded
    assert adjustment.max_delta == 0.1


def test_a_recurring_failure_never_stacks_adjustments(loop: MemoryLoop) -> None:
    for n in (1, 2):
        incident = through_recovery(loop, n)
        loop.drain()

    assert len(loop.uow.routing.for_agent(loop.tenant, "agent-1")) == 1
    assert loop.uow.loop.result(loop.tenant, incident, "routing_adjusted")["created"] is False  # type: ignore[index]


def test_routing_waits_for_its_policy(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.uow.queues.sent[0] = envelope(loop, incident, LoopStage.ROUTING_ADJUSTED, policy_id="pol_missing")
    loop.uow.loop.traces[incident]["stages_completed"].append("policy_generated")  # as if it had completed

    with pytest.raises(NotReady):
        loop.deliver()
    assert loop.uow.routing.rows == {} and loop.incident(incident)["status"] == "open"
    assert timeout(1) in loop.incident(incident)["error_message"]


def test_a_failure_recurring_after_its_adjustment_decayed_adjusts_routing_again(loop: MemoryLoop) -> None:
    """An adjustment that decayed to nothing is renewed by the failure's next loop (as PostgreSQL renews it)."""
    first = loop.report(1)
    loop.drain()
    loop.resolve(first)
    loop.drain()
    adjustment = loop.status(first).routing_adjustment
    assert adjustment is not None and adjustment.magnitude < 0
    tenant, incident, stored = loop.uow.routing.rows[adjustment.adjustment_id]
    aged = stored.model_copy(update={"created_at": stored.created_at - timedelta(days=10),
                                     "expires_at": stored.expires_at - timedelta(days=10)})  # type: ignore[operator]
    loop.uow.routing.rows[adjustment.adjustment_id] = (tenant, incident, aged)
    assert routing_view(tenant, "agent-1", uow=loop.uow)["total_effective_magnitude"] == 0

    again = loop.report(2)
    loop.drain()
    loop.resolve(again)
    loop.drain()

    assert loop.status(again).is_complete
    view = routing_view(loop.tenant, "agent-1", datetime.now(UTC), uow=loop.uow)
    assert view["total_effective_magnitude"] == pytest.approx(adjustment.magnitude, abs=1e-3)


def test_bridge_3_holds_its_batchs_keys_against_a_merge_then_reads_its_patterns(
        loop: MemoryLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The patterns' candidate keys, held shared (a merge waits, test_pattern_store.py), then the patterns read again:
    a merge that committed before the hold is seen (current_pattern then guards the survivor)."""
    from incident_loop.loop import generate_policy as bridge3

    incident = through_recovery(loop, 1)
    calls: list[Any] = []
    real_get, real_lock = loop.uow.patterns.get_many, loop.uow.patterns.lock_keys
    monkeypatch.setattr(loop.uow.patterns, "get_many",
                        lambda tenant, ids: calls.append("read") or real_get(tenant, ids))
    monkeypatch.setattr(loop.uow.patterns, "lock_keys",
                        lambda tenant, keys, shared=False: calls.append(("hold", len(keys), shared))
                        or real_lock(tenant, keys, shared))
    bridge3.read_ahead(loop.uow, [envelope(loop, incident, LoopStage.POLICY_GENERATED)])
    assert calls == ["read", ("hold", 1, True), "read"]


def test_a_merge_takes_back_the_confirmations_a_policy_earned_on_the_narrower_group(loop: MemoryLoop) -> None:
    """PolicyRule.widen: with two confirmations required, one given before the merge would, with one more after it,
    activate the policy for patterns nobody confirmed it on. An active one goes back to shadow (as regrets do)."""
    incident = through_recovery(loop, 1)
    loop.drain()
    policy = policy_of(loop, incident).model_copy(update={"confirmations_required": 2})
    policy.add_confirmation()
    assert (policy.mode, policy.confirmations_received) == (PolicyMode.SHADOW, 1)
    assert policy.widen() and policy.confirmations_received == 0 and not policy.widen()
    policy.add_confirmation()
    policy.add_confirmation()
    assert policy.mode == PolicyMode.ACTIVE
    assert policy.widen() and (policy.mode, policy.confirmations_received, policy.activated_at) == (
        PolicyMode.SHADOW, 0, None)
    assert policy.retire() and policy.mode == PolicyMode.DISABLED and not policy.retire()


def test_current_pattern_follows_a_chain_of_merges_and_refuses_a_cycle() -> None:
    """Merges flattened since 0022/0024 are one hop; an older chain is followed to its end; a cycle (corrupt data) is
    an error, not an endless loop."""
    from types import SimpleNamespace

    from incident_loop.loop.merges import current_pattern

    def uow(merged: dict[str, str | None]) -> Any:
        rows = {pid: {"id": pid, "merged_into": into} for pid, into in merged.items()}
        return SimpleNamespace(patterns=SimpleNamespace(get=lambda tenant, pid: rows.get(pid)))

    chain = uow({"a": "b", "b": "c", "c": None})
    assert current_pattern(chain, "t", "a")["id"] == "c" and current_pattern(chain, "t", "x") is None
    with pytest.raises(LookupError, match="circle"):
        current_pattern(uow({"a": "b", "b": "a"}), "t", "a")
