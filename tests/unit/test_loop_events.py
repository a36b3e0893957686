"""Loop event schemas: confidence bands, auto-apply, policy lifecycle, routing bounds, status display, JSON safety."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from incident_loop.schemas.loop.base import ensure_json_serializable
from incident_loop.schemas.loop.confidence import ConfidenceBand, ConfidenceCalculator
from incident_loop.schemas.loop.enums import (
    LOOP_MECHANICS_FROZEN_AT,
    LOOP_MECHANICS_VERSION,
    HumanCheckpointType,
    LoopFailureState,
    LoopStage,
    PolicyMode,
)
from incident_loop.schemas.loop.events import HumanCheckpoint, LoopEvent
from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
from incident_loop.schemas.loop.results import PatternMatchResult, RecoverySuggestion
from incident_loop.schemas.loop.status import LoopStatus

# --- helpers -----------------------------------------------------------------------------------


def _policy(confirmations_required: int = 1, confidence: float = 0.9) -> PolicyRule:
    return PolicyRule.create(
        "block x", "d", "routing", "error_type == 'x'", "route_away", "pat_1", "rec_1", confidence,
        confirmations_required=confirmations_required,
    )  # fmt: skip


def _adjustment(magnitude: float, **kwargs: Any) -> RoutingAdjustment:
    return RoutingAdjustment.create("agent_a", "weight_shift", magnitude, "policy pol_1", "pol_1", **kwargs)


def _match(confidence: float = 0.95, match_type: str = "exact", **details: Any) -> PatternMatchResult:
    return PatternMatchResult.from_match(
        "inc_1", "pat_1", confidence, "sig", match_details={"match_type": match_type, **details}
    )


def _recovery(confidence: float = 0.9, occurrences: int = 3, match: float | None = 0.95) -> RecoverySuggestion:
    """A suggestion for an incident that matched its pattern at `match` (0.95: an exact hash hit)."""
    return RecoverySuggestion.create("inc_1", "pat_1", "template", confidence, "retry", {"n": 1}, occurrences,
                                     match_confidence=match)


def _checkpoint() -> HumanCheckpoint:
    return HumanCheckpoint.create(
        HumanCheckpointType.APPROVE_RECOVERY, "inc_1", "t", LoopStage.RECOVERY_SUGGESTED, "rec_1", "approve?"
    )


def _complete_status() -> LoopStatus:
    return LoopStatus(
        loop_id="loop_1", incident_id="inc_1", tenant_id="t", current_stage=LoopStage.LOOP_COMPLETE,
        stages_completed=[s.value for s in LoopStage.ordered()], started_at=datetime.now(UTC),
        completed_at=datetime.now(UTC), is_complete=True,
        pattern_match_result=_match(), recovery_suggestion=_recovery(), policy_rule=_policy(),
        routing_adjustment=_adjustment(-0.1),
    )  # fmt: skip


def _blocked_status() -> LoopStatus:
    return LoopStatus(
        loop_id="loop_2", incident_id="inc_2", tenant_id="t", current_stage=LoopStage.RECOVERY_SUGGESTED,
        stages_completed=["incident_created", "pattern_matched"], started_at=datetime.now(UTC), is_blocked=True,
        failure_state=LoopFailureState.RECOVERY_PENDING_APPROVAL, pending_checkpoints=["chk_1"],
        pattern_match_result=_match(0.5, "new"), recovery_suggestion=_recovery(0.7, occurrences=1),
    )  # fmt: skip


def _prevented_status() -> LoopStatus:
    return LoopStatus(
        loop_id="loop_3", incident_id="inc_3", tenant_id="t", current_stage=LoopStage.PATTERN_MATCHED,
        stages_completed=["incident_created", "pattern_matched"], started_at=datetime.now(UTC),
        failure_state=LoopFailureState.PREVENTED, pattern_match_result=_match(prevented_by="pol_9"),
    )  # fmt: skip


# --- module constants and ids ------------------------------------------------------------------


def test_mechanics_version_and_frozen_date() -> None:
    assert LOOP_MECHANICS_VERSION == "1.0.0"
    assert date.fromisoformat(LOOP_MECHANICS_FROZEN_AT)


@pytest.mark.parametrize(
    ("make", "attr", "prefix"),
    [
        (lambda: LoopEvent.create("i", "t", LoopStage.INCIDENT_CREATED), "event_id", "evt_"),
        (_recovery, "recovery_id", "rec_"),
        (_policy, "policy_id", "pol_"),
        (lambda: _adjustment(0.1), "adjustment_id", "adj_"),
        (_checkpoint, "checkpoint_id", "chk_"),
    ],
)
def test_ids_are_prefixed_16_hex_characters(make: Any, attr: str, prefix: str) -> None:
    assert re.fullmatch(rf"{prefix}[0-9a-f]{{16}}", getattr(make(), attr))


# --- confidence bands --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "band"),
    [
        (1.0, ConfidenceBand.STRONG_MATCH),
        (0.85, ConfidenceBand.STRONG_MATCH),
        (0.8499, ConfidenceBand.WEAK_MATCH),
        (0.6, ConfidenceBand.WEAK_MATCH),
        (0.5999, ConfidenceBand.NOVEL),
        (0.0, ConfidenceBand.NOVEL),
    ],
)
def test_band_at_and_around_each_threshold(confidence: float, band: ConfidenceBand) -> None:
    assert ConfidenceBand.from_confidence(confidence) is band


@pytest.mark.parametrize("confidence", [-0.01, 1.01, math.nan])
def test_confidence_outside_zero_to_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError):
        ConfidenceBand.from_confidence(confidence)


@pytest.mark.parametrize(
    ("band", "auto"), [("strong_match", True), ("weak_match", False), ("novel", False)]
)  # fmt: skip
def test_only_strong_match_allows_auto_apply(band: str, auto: bool) -> None:
    assert ConfidenceBand(band).allows_auto_apply() is auto


@pytest.mark.parametrize(
    ("band", "review"), [("strong_match", False), ("weak_match", True), ("novel", True)]
)  # fmt: skip
def test_weak_and_novel_bands_require_human_review(band: str, review: bool) -> None:
    assert ConfidenceBand(band).requires_human_review() is review


# --- confidence calculator ---------------------------------------------------------------------


def test_calculator_constants() -> None:
    assert (
        ConfidenceCalculator.EXACT_MATCH_CONFIDENCE,
        ConfidenceCalculator.BASE_RECOVERY_CONFIDENCE,
        ConfidenceCalculator.AUTO_APPLY_CONFIDENCE,
        ConfidenceCalculator.AUTO_APPLY_MIN_OCCURRENCES,
    ) == (0.95, 0.7, 0.85, 3)


@pytest.mark.parametrize(("occurrences", "confidence"), [(1, 0.7), (2, 0.8), (3, 0.9), (10, 0.9)])
def test_recovery_confidence_per_occurrence_count(occurrences: int, confidence: float) -> None:
    # == on purpose: the value is rounded, so 2 occurrences give exactly 0.8, not 0.7999...
    assert ConfidenceCalculator.calculate_recovery_confidence(occurrences) == confidence


def test_recovery_confidence_is_capped_at_0_9_whatever_the_base() -> None:
    assert ConfidenceCalculator.calculate_recovery_confidence(3, base=0.8) == 0.9


@pytest.mark.parametrize("occurrences", [0, -1])
def test_recovery_confidence_refuses_fewer_than_one_occurrence(occurrences: int) -> None:
    with pytest.raises(ValueError):
        ConfidenceCalculator.calculate_recovery_confidence(occurrences)


@pytest.mark.parametrize(
    ("confidence", "occurrences", "auto"),
    [(0.9, 2, False), (0.9, 3, True), (0.85, 3, True), (0.8499, 10, False)],
)
def test_auto_apply_needs_strong_confidence_and_three_occurrences(
    confidence: float, occurrences: int, auto: bool
) -> None:
    assert ConfidenceCalculator.should_auto_apply(confidence, occurrences) is auto


@pytest.mark.parametrize(
    ("confidence", "occurrences", "level"),
    [(0.9, 3, 0), (0.9, 2, 1), (0.6, 1, 1), (0.5999, 5, 2), (0.0, 1, 2)],
)
def test_confirmation_level(confidence: float, occurrences: int, level: int) -> None:
    assert ConfidenceCalculator.get_confirmation_level(confidence, occurrences) == level


# --- enums -------------------------------------------------------------------------------------


def test_loop_has_five_ordered_stages() -> None:
    assert [s.value for s in LoopStage.ordered()] == [
        "incident_created", "pattern_matched", "recovery_suggested", "policy_generated", "routing_adjusted",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "following"),
    [
        (LoopStage.INCIDENT_CREATED, LoopStage.PATTERN_MATCHED),
        (LoopStage.POLICY_GENERATED, LoopStage.ROUTING_ADJUSTED),
        (LoopStage.ROUTING_ADJUSTED, LoopStage.LOOP_COMPLETE),
        (LoopStage.LOOP_COMPLETE, None),
    ],
)
def test_next_stage(stage: LoopStage, following: LoopStage | None) -> None:
    assert stage.next_stage() is following


def test_failure_state_values_are_lowercase_names() -> None:
    assert all(state.value == state.name.lower() for state in LoopFailureState)
    assert len(LoopFailureState) == 11


def test_policy_mode_and_checkpoint_type_values() -> None:
    assert [m.value for m in PolicyMode] == ["shadow", "pending", "active", "disabled"]
    assert [t.value for t in HumanCheckpointType] == [
        "approve_recovery", "approve_policy", "simulate_routing", "revert_loop", "override_guardrail",
    ]  # fmt: skip


# --- loop events -------------------------------------------------------------------------------


def test_event_without_failure_is_success() -> None:
    assert LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED).is_success is True


def test_shadow_mode_event_is_still_a_success() -> None:
    event = LoopEvent.create("i", "t", LoopStage.POLICY_GENERATED, failure_state=LoopFailureState.POLICY_SHADOW_MODE)
    assert event.is_success is True


def test_event_with_a_real_failure_is_not_a_success() -> None:
    event = LoopEvent.create("i", "t", LoopStage.RECOVERY_SUGGESTED, failure_state=LoopFailureState.RECOVERY_REJECTED)
    assert event.is_success is False


def test_pending_approval_event_is_blocked() -> None:
    event = LoopEvent.create(
        "i", "t", LoopStage.RECOVERY_SUGGESTED, failure_state=LoopFailureState.RECOVERY_PENDING_APPROVAL
    )
    assert event.is_blocked is True


def test_event_requiring_human_review_is_blocked() -> None:
    assert LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED, requires_human_review=True).is_blocked is True


def test_plain_event_is_not_blocked() -> None:
    assert LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED).is_blocked is False


def test_event_details_that_are_not_json_fail_at_creation_with_their_path() -> None:
    with pytest.raises(TypeError, match=re.escape("details.match.items[2]")):
        LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED, details={"match": {"items": [1, 2, {3}]}})


def test_event_details_assigned_later_are_checked_too() -> None:
    event = LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED)
    with pytest.raises(TypeError, match=re.escape("details.bad")):
        event.details = {"bad": object()}


def test_event_stores_models_in_details_as_plain_dicts() -> None:
    match = _match()
    event = LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED, details={"match_result": match})
    assert event.details["match_result"] == match.to_dict()
    assert PatternMatchResult.model_validate(event.details["match_result"]) == match


# --- pattern match results ---------------------------------------------------------------------


def test_from_match_is_matched_and_banded_by_confidence() -> None:
    result = _match(0.7, "fuzzy")
    assert (result.matched, result.pattern_id, result.confidence_band) == (True, "pat_1", ConfidenceBand.WEAK_MATCH)


def test_no_match_is_novel_with_zero_confidence_and_a_reason() -> None:
    result = PatternMatchResult.no_match("inc_1", "sig", "empty message")
    assert (result.matched, result.pattern_id, result.confidence) == (False, None, 0.0)
    assert result.confidence_band is ConfidenceBand.NOVEL and result.match_details == {"reason": "empty message"}


@pytest.mark.parametrize(
    ("result", "proceeds"),
    [
        (PatternMatchResult.from_match("i", "p", 0.95, "s"), True),
        (PatternMatchResult.from_match("i", "p", 0.8, "s"), False),
        (PatternMatchResult.no_match("i", "s", "none"), False),
    ],
)
def test_only_a_strong_match_auto_proceeds(result: PatternMatchResult, proceeds: bool) -> None:
    assert result.should_auto_proceed() is proceeds


# --- recovery suggestions ----------------------------------------------------------------------


def test_recovery_at_0_9_with_two_occurrences_is_not_auto_applied() -> None:
    recovery = _recovery(0.9, occurrences=2)
    assert (recovery.auto_applicable, recovery.status, recovery.requires_confirmation) == (False, "pending", 1)


def test_recovery_at_0_9_with_three_occurrences_is_auto_approved() -> None:
    recovery = _recovery(0.9, occurrences=3)
    assert (recovery.auto_applicable, recovery.status, recovery.requires_confirmation) == (True, "approved", 0)
    assert recovery.confidence_band is ConfidenceBand.STRONG_MATCH


@pytest.mark.parametrize("match", [0.84, 0.6, 0.05, None])
def test_a_recovery_for_an_incident_that_did_not_match_its_pattern_strongly_waits_for_a_person(
        match: float | None) -> None:
    """Seed 003: only a strong match proceeds without a person, however often the pattern was seen (and a
    hand-off that does not say how strong the match was is not strong)."""
    recovery = _recovery(0.9, occurrences=3, match=match)
    assert (recovery.auto_applicable, recovery.status, recovery.requires_confirmation) == (False, "pending", 1)


def test_a_recovery_rejected_last_time_waits_for_at_least_one_confirmation() -> None:
    recovery = RecoverySuggestion.create("inc_1", "pat_1", "template", 0.9, "retry", {}, 3, rejected_last=True,
                                         match_confidence=0.95)
    assert (recovery.auto_applicable, recovery.status, recovery.requires_confirmation) == (False, "pending", 1)


def test_one_confirmation_approves_a_weak_recovery() -> None:
    recovery = _recovery(0.7, occurrences=1)
    recovery.add_confirmation()
    assert (recovery.status, recovery.confirmations_received) == ("approved", 1)


def test_a_novel_recovery_needs_two_confirmations() -> None:
    recovery = _recovery(0.5, occurrences=1)
    recovery.add_confirmation()
    assert recovery.status == "pending"
    recovery.add_confirmation()
    assert recovery.status == "approved"


def test_confirming_a_rejected_recovery_does_not_approve_it() -> None:
    recovery = _recovery(0.7, occurrences=1)
    recovery.reject("wrong fix")
    recovery.add_confirmation()
    assert (recovery.status, recovery.rejection_reason) == ("rejected", "wrong fix")


def test_none_available_is_a_rejected_none_suggestion() -> None:
    recovery = RecoverySuggestion.none_available("inc_1", "pat_1", "no template")
    assert (recovery.suggestion_type, recovery.confidence, recovery.status) == ("none", 0.0, "rejected")
    assert recovery.rejection_reason == "no template" and recovery.recovery_id.startswith("rec_")


def test_mark_applied_on_an_approved_recovery() -> None:
    recovery = _recovery()
    recovery.mark_applied()
    assert recovery.status == "applied"


def test_a_pending_recovery_cannot_be_applied() -> None:
    with pytest.raises(ValueError):
        _recovery(0.7, occurrences=1).mark_applied()


def test_recovery_status_outside_the_literal_is_refused() -> None:
    with pytest.raises(ValidationError):
        _recovery().status = "done"  # type: ignore[assignment]


# --- policy rules ------------------------------------------------------------------------------


def test_policy_is_created_in_shadow_mode_even_at_high_confidence() -> None:
    policy = _policy(confidence=0.99)
    assert (policy.mode, policy.activated_at, policy.confidence_band) == (
        PolicyMode.SHADOW, None, ConfidenceBand.STRONG_MATCH,
    )  # fmt: skip


def test_policy_activates_when_confirmations_reach_the_requirement() -> None:
    policy = _policy(confirmations_required=2)
    policy.add_confirmation()
    assert policy.mode is PolicyMode.SHADOW
    policy.add_confirmation()
    assert policy.mode is PolicyMode.ACTIVE and policy.activated_at is not None


def test_pending_policy_activates_on_confirmation() -> None:
    policy = _policy()
    policy.mode = PolicyMode.PENDING
    policy.add_confirmation()
    assert policy.mode is PolicyMode.ACTIVE


def test_disabled_policy_is_not_activated_by_confirmation() -> None:
    policy = _policy()
    policy.mode = PolicyMode.DISABLED
    policy.add_confirmation()
    assert policy.mode is PolicyMode.DISABLED


def test_regrets_below_threshold_keep_the_policy_active() -> None:
    policy = _policy()
    policy.add_confirmation()
    assert [policy.record_regret(threshold=3) for _ in range(2)] == [False, False]
    assert policy.mode is PolicyMode.ACTIVE


def test_regret_at_threshold_demotes_to_shadow_and_resets_confirmations() -> None:
    policy = _policy()
    policy.add_confirmation()
    policy.record_regret(threshold=3)
    policy.record_regret(threshold=3)
    assert policy.record_regret(threshold=3) is True
    assert (policy.mode, policy.activated_at, policy.confirmations_received, policy.regret_count) == (
        PolicyMode.SHADOW, None, 0, 3,
    )  # fmt: skip


def test_regret_on_a_shadow_policy_demotes_nothing() -> None:
    policy = _policy()
    assert policy.record_regret(threshold=1) is False
    assert policy.mode is PolicyMode.SHADOW


def test_shadow_block_rate_without_evaluations_is_zero() -> None:
    assert _policy().shadow_block_rate() == 0.0


def test_shadow_block_rate_three_of_four() -> None:
    policy = _policy()
    for would_block in (True, True, False, True):
        policy.record_shadow_evaluation(would_block)
    assert (policy.shadow_evaluations, policy.shadow_would_block, policy.shadow_block_rate()) == (4, 3, 0.75)


# --- routing adjustments -----------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "stored"), [(0.5, 0.2), (-0.5, -0.2), (-0.1, -0.1), (0.2, 0.2)])
def test_routing_magnitude_is_clamped_to_max_delta(asked: float, stored: float) -> None:
    assert _adjustment(asked).magnitude == stored


def test_routing_magnitude_clamp_follows_a_custom_max_delta() -> None:
    assert _adjustment(-0.9, max_delta=0.05).magnitude == -0.05


def test_routing_adjustment_beyond_max_delta_cannot_be_built_or_assigned() -> None:
    adjustment = _adjustment(0.1)
    with pytest.raises(ValidationError):
        adjustment.magnitude = 0.3
    with pytest.raises(ValidationError):
        RoutingAdjustment.model_validate({**adjustment.to_dict(), "magnitude": 0.5})


def test_routing_adjustment_expires_after_decay_days() -> None:
    adjustment = _adjustment(0.1, decay_days=10)
    assert adjustment.expires_at == adjustment.created_at + timedelta(days=10)


@pytest.mark.parametrize(("days", "expected"), [(0, -0.2), (5, -0.1), (10, 0.0), (30, 0.0)])
def test_effective_magnitude_decays_linearly_to_zero(days: int, expected: float) -> None:
    adjustment = _adjustment(-0.2, decay_days=10)
    assert adjustment.effective_magnitude(adjustment.created_at + timedelta(days=days)) == pytest.approx(expected)


def test_effective_magnitude_defaults_to_now() -> None:
    assert _adjustment(-0.2).effective_magnitude() == pytest.approx(-0.2, abs=1e-6)


def test_rolled_back_adjustment_has_no_effect() -> None:
    adjustment = _adjustment(-0.2)
    adjustment.rollback("kpi regressed")
    assert adjustment.effective_magnitude(adjustment.created_at) == 0.0
    assert (adjustment.is_active, adjustment.was_rolled_back, adjustment.rollback_reason) == (
        False, True, "kpi regressed",
    )  # fmt: skip


@pytest.mark.parametrize(("current", "regressed"), [(0.73, False), (0.71, True)])
def test_kpi_regression_just_below_and_above_the_threshold(current: float, regressed: bool) -> None:
    # baseline 0.8, threshold 10%: 0.73 is 8.75% down, 0.71 is 11.25% down
    adjustment = _adjustment(-0.1, kpi_baseline=0.8, rollback_threshold=0.1)
    assert adjustment.check_kpi_regression(current) is regressed
    assert adjustment.kpi_current == current


def test_kpi_improvement_is_not_a_regression() -> None:
    assert _adjustment(-0.1, kpi_baseline=0.8).check_kpi_regression(0.95) is False


@pytest.mark.parametrize("baseline", [None, 0.0])
def test_without_a_positive_baseline_nothing_regresses(baseline: float | None) -> None:
    adjustment = _adjustment(-0.1, kpi_baseline=baseline)
    assert adjustment.check_kpi_regression(0.0) is False
    assert adjustment.kpi_current == 0.0


# --- human checkpoints -------------------------------------------------------------------------


def test_checkpoint_is_pending_with_default_options() -> None:
    checkpoint = _checkpoint()
    assert checkpoint.is_pending() and checkpoint.options == ["approve", "reject", "modify"]


def test_checkpoint_resolves_with_a_valid_option() -> None:
    checkpoint = _checkpoint()
    checkpoint.resolve("approve", "oncall")
    assert not checkpoint.is_pending()
    assert (checkpoint.resolution, checkpoint.resolved_by) == ("approve", "oncall")


def test_checkpoint_refuses_a_resolution_outside_its_options() -> None:
    checkpoint = _checkpoint()
    with pytest.raises(ValueError, match="maybe"):
        checkpoint.resolve("maybe", "oncall")
    assert checkpoint.is_pending()


def test_checkpoint_cannot_be_resolved_twice() -> None:
    checkpoint = _checkpoint()
    checkpoint.resolve("approve", "oncall")
    with pytest.raises(ValueError, match="already resolved"):
        checkpoint.resolve("reject", "someone else")
    assert checkpoint.resolution == "approve"


# --- loop status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "total", "pct"),
    [(0, 5, 0.0), (2, 5, 40.0), (5, 5, 100.0), (1, 3, 33.3), (5, 4, 100.0)],
)
def test_completion_pct(completed: int, total: int, pct: float) -> None:
    status = _complete_status().model_copy(
        update={"stages_completed": [s.value for s in LoopStage.ordered()][:completed], "total_stages": total}
    )
    assert status.completion_pct() == pct


def test_console_display_for_a_complete_loop() -> None:
    lines = _complete_status().to_console_display().splitlines()
    assert lines[:10] == [
        "Incident: inc_1",
        "Loop Status: COMPLETE (is_complete: true)",
        "",
        "Stages Completed:",
        "├── incident_created ✅",
        "├── pattern_matched ✅ (exact hash, 0.95 confidence)",
        "├── recovery_suggested ✅ (auto-apply, 0.9 confidence)",
        "├── policy_generated ✅ (shadow mode)",
        "└── routing_adjusted ✅ (weight_shift -0.1)",
        "",
    ]
    assert lines[10].startswith("Narrative: Incident inc_1 matched pattern pat_1 (exact, 0.95).")


def test_console_display_for_a_blocked_loop_names_the_checkpoint() -> None:
    lines = _blocked_status().to_console_display().splitlines()
    assert "Loop Status: BLOCKED (is_complete: false)" in lines
    assert "├── pattern_matched ✅ (new pattern, 0.5 confidence)" in lines
    assert "├── recovery_suggested ⏸ waiting on chk_1 (needs approval, 0.7 confidence)" in lines
    assert "├── policy_generated ⬜" in lines
    assert "└── routing_adjusted ⬜" in lines


def test_console_display_for_a_prevented_loop() -> None:
    lines = _prevented_status().to_console_display().splitlines()
    assert "Loop Status: PREVENTED (is_complete: false)" in lines
    assert "├── pattern_matched ✅ (exact hash, 0.95 confidence, prevented by pol_9)" in lines
    assert "├── recovery_suggested ⬜" in lines


def test_console_display_for_a_failed_loop_marks_the_failed_stage() -> None:
    status = _blocked_status().model_copy(
        update={"is_blocked": False, "failure_state": LoopFailureState.RECOVERY_REJECTED,
                "stages_failed": ["recovery_suggested"], "pending_checkpoints": []}
    )  # fmt: skip
    lines = status.to_console_display().splitlines()
    assert "Loop Status: FAILED (recovery_rejected) (is_complete: false)" in lines
    assert any(line.startswith("├── recovery_suggested ❌") for line in lines)


def test_console_display_for_a_loop_in_progress() -> None:
    status = _blocked_status().model_copy(update={"is_blocked": False, "failure_state": None})
    assert "Loop Status: IN PROGRESS (is_complete: false)" in status.to_console_display().splitlines()


def test_narrative_of_a_complete_loop() -> None:
    status = _complete_status()
    assert status.narrative == (
        f"Incident inc_1 matched pattern pat_1 (exact, 0.95). "
        f"Recovery {status.recovery_suggestion.recovery_id} was auto-applied at 0.9. "  # type: ignore[union-attr]
        f"Policy {status.policy_rule.policy_id} is in shadow mode. "  # type: ignore[union-attr]
        f"Routing for agent agent_a was adjusted by -0.1."
    )
    assert status.narrative == status._generate_narrative()


def test_narrative_of_a_blocked_loop_says_it_waits_for_approval() -> None:
    narrative = _blocked_status().narrative
    assert narrative.startswith("Incident inc_2 started new pattern pat_1 (0.5).")
    assert "waiting for human approval" in narrative and narrative.endswith("The loop is waiting on chk_1.")


def test_narrative_of_a_failed_loop_names_the_stage_and_failure() -> None:
    status = _blocked_status().model_copy(
        update={"is_blocked": False, "failure_state": LoopFailureState.STAGE_ERROR, "pending_checkpoints": []}
    )
    assert status.narrative.endswith("The loop stopped at recovery_suggested: stage_error.")


def test_narrative_of_a_prevented_loop_names_the_policy() -> None:
    assert "prevented by active policy pol_9" in _prevented_status().narrative


def test_status_to_dict_has_completion_narrative_and_nested_dicts() -> None:
    status = _complete_status()
    data = status.to_dict()
    assert data["completion_pct"] == 100.0 and data["narrative"] == status.narrative
    assert data["recovery_suggestion"]["status"] == "approved" and data["policy_rule"]["mode"] == "shadow"


# --- JSON round trips --------------------------------------------------------------------------


def _resolved_checkpoint() -> HumanCheckpoint:
    checkpoint = _checkpoint()
    checkpoint.resolve("modify", "oncall")
    return checkpoint


@pytest.mark.parametrize(
    "make",
    [
        lambda: LoopEvent.create("i", "t", LoopStage.PATTERN_MATCHED, details={"at": datetime.now(UTC)},
                                 confidence_band=ConfidenceBand.WEAK_MATCH),
        _match,
        lambda: PatternMatchResult.no_match("i", "s", "r"),
        _recovery,
        lambda: RecoverySuggestion.none_available("i", "p", "r"),
        _policy,
        lambda: _adjustment(-0.1, kpi_baseline=0.8, capability="search"),
        _resolved_checkpoint,
        _complete_status,
        _blocked_status,
    ],
)  # fmt: skip
def test_every_model_round_trips_through_json_and_model_validate(make: Any) -> None:
    model: BaseModel = make()
    data = model.to_dict()  # type: ignore[attr-defined]
    assert json.loads(json.dumps(data)) == data
    rebuilt = type(model).model_validate(json.loads(json.dumps(data)))
    assert rebuilt == model


# --- ensure_json_serializable ------------------------------------------------------------------


def test_set_nested_in_a_list_inside_a_dict_names_its_exact_path() -> None:
    with pytest.raises(TypeError, match=re.escape("details.match.items[2]: object of type set")):
        ensure_json_serializable({"match": {"items": [1, 2, {3}]}})


def test_arbitrary_object_is_refused_at_the_given_path() -> None:
    with pytest.raises(TypeError, match=re.escape("payload[0]")):
        ensure_json_serializable([object()], path="payload")


def test_non_string_key_is_refused() -> None:
    with pytest.raises(TypeError, match=re.escape("details.counts: key 1")):
        ensure_json_serializable({"counts": {1: "a"}})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_float_is_refused(value: float) -> None:
    with pytest.raises(TypeError, match=re.escape("details.score")):
        ensure_json_serializable({"score": value})


def test_datetimes_enums_models_and_tuples_become_json() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    out = ensure_json_serializable(
        {"at": when, "day": when.date(), "band": ConfidenceBand.NOVEL, "match": _match(), "pair": (1, "a")}
    )
    assert out["at"] == "2026-01-02T03:04:00+00:00" and out["day"] == "2026-01-02"
    assert type(out["band"]) is str and out["band"] == "novel"
    assert out["match"] == _match().to_dict()
    assert out["pair"] == [1, "a"]
    assert json.loads(json.dumps(out)) == out


def test_object_with_to_dict_is_converted_through_it() -> None:
    class Legacy:
        def to_dict(self) -> dict[str, Any]:
            return {"when": datetime(2026, 1, 1, tzinfo=UTC)}

    assert ensure_json_serializable({"x": Legacy()}) == {"x": {"when": "2026-01-01T00:00:00+00:00"}}


def test_loop_status_is_converted_with_its_extra_fields() -> None:
    out = ensure_json_serializable(_complete_status())
    assert out["completion_pct"] == 100.0 and "narrative" in out


def test_result_is_a_copy() -> None:
    original = {"items": [1, 2]}
    out = ensure_json_serializable(original)
    out["items"].append(3)
    assert original == {"items": [1, 2]}
