"""Seed 003's rules: bands, confidence, auto-apply, policy lifecycle, routing bounds, JSON safety."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from incident_loop.schemas.loop_events import (
    ConfidenceBand,
    ConfidenceCalculator,
    HumanCheckpoint,
    HumanCheckpointType,
    LoopEvent,
    LoopFailureState,
    LoopStage,
    LoopStatus,
    PatternMatchResult,
    PolicyMode,
    PolicyRule,
    RecoverySuggestion,
    RoutingAdjustment,
    ensure_json_serializable,
)


@pytest.mark.parametrize(
    ("confidence", "band"),
    [(1.0, "strong_match"), (0.85, "strong_match"), (0.8499, "weak_match"), (0.6, "weak_match"),
     (0.5999, "novel"), (0.0, "novel")],
)
def test_band_thresholds(confidence: float, band: str) -> None:
    assert ConfidenceBand.from_confidence(confidence).value == band


@pytest.mark.parametrize("confidence", [-0.01, 1.01])
def test_confidence_outside_unit_interval_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError):
        ConfidenceBand.from_confidence(confidence)


def test_only_strong_match_allows_auto_apply_and_others_need_review() -> None:
    assert [b.allows_auto_apply() for b in ConfidenceBand] == [True, False, False]
    assert [b.requires_human_review() for b in ConfidenceBand] == [False, True, True]


@pytest.mark.parametrize(("occurrences", "confidence"), [(1, 0.7), (2, 0.8), (3, 0.9), (10, 0.9)])
def test_recovery_confidence_grows_with_occurrences_and_caps_at_0_9(occurrences: int, confidence: float) -> None:
    assert ConfidenceCalculator.calculate_recovery_confidence(occurrences) == confidence


def test_zero_occurrences_is_refused() -> None:
    with pytest.raises(ValueError):
        ConfidenceCalculator.calculate_recovery_confidence(0)


@pytest.mark.parametrize(
    ("confidence", "occurrences", "auto"), [(0.9, 2, False), (0.9, 3, True), (0.84, 5, False), (0.85, 3, True)]
)
def test_auto_apply_needs_confidence_and_three_occurrences(confidence: float, occurrences: int, auto: bool) -> None:
    assert ConfidenceCalculator.should_auto_apply(confidence, occurrences) is auto


def test_confirmation_levels() -> None:
    assert ConfidenceCalculator.get_confirmation_level(0.9, 3) == 0
    assert ConfidenceCalculator.get_confirmation_level(0.7, 1) == 1
    assert ConfidenceCalculator.get_confirmation_level(0.5, 1) == 2


def test_shadow_mode_is_not_a_failure_of_the_event() -> None:
    shadow = LoopEvent.create("i", "t", LoopStage.POLICY_GENERATED, failure_state=LoopFailureState.POLICY_SHADOW_MODE)
    rejected = LoopEvent.create("i", "t", LoopStage.RECOVERY_SUGGESTED,
                                failure_state=LoopFailureState.RECOVERY_REJECTED)
    assert shadow.is_success is True
    assert rejected.is_success is False


def test_pending_approval_event_is_blocked() -> None:
    event = LoopEvent.create("i", "t", LoopStage.RECOVERY_SUGGESTED,
                             failure_state=LoopFailureState.RECOVERY_PENDING_APPROVAL)
    assert event.is_blocked is True


def test_event_details_that_are_not_json_fail_at_creation_with_their_path() -> None:
    with pytest.raises(TypeError, match=r"details\.match\.items\[2\]"):
        LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED, details={"match": {"items": [1, 2, {3}]}})


def test_ensure_json_serializable_converts_models_enums_and_datetimes() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    result = PatternMatchResult.from_match("i", "p", 0.95, "sig")
    out = ensure_json_serializable({"r": result, "band": ConfidenceBand.NOVEL, "at": when})
    assert json.loads(json.dumps(out)) == out
    assert out["band"] == "novel" and out["at"] == when.isoformat() and out["r"]["pattern_id"] == "p"


def test_policy_is_created_in_shadow_and_confirmation_activates() -> None:
    policy = _policy(confirmations_required=2)
    assert policy.mode == PolicyMode.SHADOW
    policy.add_confirmation()
    assert policy.mode == PolicyMode.SHADOW
    policy.add_confirmation()
    assert policy.mode == PolicyMode.ACTIVE and policy.activated_at is not None


def test_regrets_demote_only_at_the_threshold() -> None:
    policy = _policy()
    policy.add_confirmation()
    assert [policy.record_regret(threshold=3) for _ in range(3)] == [False, False, True]
    assert policy.mode == PolicyMode.SHADOW and policy.activated_at is None and policy.regret_count == 3


def test_shadow_block_rate() -> None:
    policy = _policy()
    assert policy.shadow_block_rate() == 0.0
    for would_block in (True, True, False, True):
        policy.record_shadow_evaluation(would_block)
    assert policy.shadow_block_rate() == 0.75


@pytest.mark.parametrize(("asked", "stored"), [(0.5, 0.2), (-0.5, -0.2), (-0.1, -0.1)])
def test_routing_magnitude_never_exceeds_max_delta(asked: float, stored: float) -> None:
    assert _adjustment(asked).magnitude == stored


def test_effective_magnitude_decays_linearly_to_zero() -> None:
    adj = _adjustment(-0.2, decay_days=10)
    t0 = adj.created_at
    assert adj.effective_magnitude(t0) == pytest.approx(-0.2)
    assert adj.effective_magnitude(t0 + timedelta(days=5)) == pytest.approx(-0.1)
    assert adj.effective_magnitude(t0 + timedelta(days=10)) == 0.0
    assert adj.effective_magnitude(t0 + timedelta(days=30)) == 0.0


def test_rolled_back_adjustment_has_no_effect() -> None:
    adj = _adjustment(-0.2)
    adj.rollback("kpi regressed")
    assert adj.effective_magnitude(adj.created_at) == 0.0
    assert (adj.is_active, adj.was_rolled_back, adj.rollback_reason) == (False, True, "kpi regressed")


@pytest.mark.parametrize(("current", "regressed"), [(0.9, False), (0.82, False), (0.80, True), (0.5, True)])
def test_kpi_regression_past_the_threshold(current: float, regressed: bool) -> None:
    adj = _adjustment(-0.1, kpi_baseline=0.9, rollback_threshold=0.1)
    assert adj.check_kpi_regression(current) is regressed
    assert adj.kpi_current == current


def test_no_baseline_never_regresses() -> None:
    assert _adjustment(-0.1).check_kpi_regression(0.0) is False


def test_checkpoint_resolves_once_with_a_valid_option() -> None:
    cp = HumanCheckpoint.create(HumanCheckpointType.APPROVE_RECOVERY, "i", "t", LoopStage.RECOVERY_SUGGESTED,
                                "rec_1", "approve?")
    with pytest.raises(ValueError):
        cp.resolve("maybe", "op")
    cp.resolve("approve", "op")
    assert not cp.is_pending()
    with pytest.raises(ValueError):
        cp.resolve("reject", "op")


def test_recovery_suggestion_auto_applies_only_at_three_occurrences() -> None:
    second = RecoverySuggestion.create("i", "p", "template", 0.8, "retry", {}, occurrence_count=2)
    third = RecoverySuggestion.create("i", "p", "template", 0.9, "retry", {}, occurrence_count=3)
    assert (second.auto_applicable, second.status, second.requires_confirmation) == (False, "pending", 1)
    assert (third.auto_applicable, third.status, third.requires_confirmation) == (True, "approved", 0)
    second.add_confirmation()
    assert second.status == "approved"


def test_every_model_round_trips_through_json() -> None:
    status = _status(is_complete=True)
    for model in (status, status.pattern_match_result, status.recovery_suggestion, status.policy_rule,
                  status.routing_adjustment):
        assert model is not None
        data = json.loads(json.dumps(model.to_dict()))
        assert type(model).model_validate(data).to_dict() == model.to_dict()


def test_completion_pct_and_console_for_a_complete_loop() -> None:
    status = _status(is_complete=True)
    assert status.completion_pct() == 100.0
    display = status.to_console_display()
    assert "Loop Status: COMPLETE" in display
    assert "├── pattern_matched ✅ (exact hash, 0.95 confidence)" in display
    assert "└── routing_adjusted ✅" in display
    assert "Narrative:" in display


def test_console_for_a_blocked_loop_names_the_checkpoint() -> None:
    status = _status(stages=["incident_created", "pattern_matched"], current=LoopStage.RECOVERY_SUGGESTED,
                     is_blocked=True, pending=["chk_1"])
    display = status.to_console_display()
    assert "BLOCKED" in display and "recovery_suggested ⏸ waiting on chk_1" in display
    assert status.completion_pct() == 40.0


def test_console_for_a_prevented_loop() -> None:
    status = _status(stages=["incident_created", "pattern_matched"], failure=LoopFailureState.PREVENTED)
    assert "PREVENTED" in status.to_console_display()
    assert "prevented" in status.narrative


def _policy(confirmations_required: int = 1) -> PolicyRule:
    return PolicyRule.create("n", "d", "routing", "error_type == 'x'", "route_away", "pat_1", "rec_1", 0.9,
                             confirmations_required=confirmations_required)


def _adjustment(magnitude: float, **kwargs: object) -> RoutingAdjustment:
    return RoutingAdjustment.create("agent", "weight_shift", magnitude, "r", "pol_1", **kwargs)  # type: ignore[arg-type]


def _status(
    stages: list[str] | None = None,
    current: LoopStage = LoopStage.ROUTING_ADJUSTED,
    is_complete: bool = False,
    is_blocked: bool = False,
    pending: list[str] | None = None,
    failure: LoopFailureState | None = None,
) -> LoopStatus:
    return LoopStatus(
        loop_id="loop_1", incident_id="inc_1", tenant_id="t", current_stage=current,
        stages_completed=stages if stages is not None else [s.value for s in LoopStage.ordered()],
        started_at=datetime.now(UTC), is_complete=is_complete, is_blocked=is_blocked, failure_state=failure,
        pending_checkpoints=pending or [],
        pattern_match_result=PatternMatchResult.from_match("inc_1", "pat_1", 0.95, "sig",
                                                            match_details={"match_type": "exact"}),
        recovery_suggestion=RecoverySuggestion.create("inc_1", "pat_1", "template", 0.9, "retry", {"n": 1}, 3),
        policy_rule=_policy(),
        routing_adjustment=_adjustment(-0.1),
    )
