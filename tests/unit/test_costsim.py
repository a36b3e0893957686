"""CostSim V1 and V2: pure, versioned, deterministic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from incident_loop.costsim.models import drift
from incident_loop.costsim.simulators import V1_VERSION, V2_VERSION, simulate_v1, simulate_v2
from incident_loop.schemas.costsim import Plan

PLAN = Plan.model_validate({"steps": [
    {"skill": "llm_invoke", "model": "claude-sonnet", "tokens_in": 3000, "tokens_out": 800, "retries": 1,
     "cached_tokens_in": 2000},
    {"skill": "web_search", "model": "gpt-small", "tokens_in": 500, "tokens_out": 100},
]})


def test_v1_is_the_skills_static_rates_times_attempts() -> None:
    result = simulate_v1(PLAN)
    # llm_invoke at its table rates (0.80 / 4.00 per million), twice; web_search at 0.15 / 0.60, once
    llm = 2 * (0.0001 + (3000 * 0.80 + 800 * 4.00) / 1e6)
    search = 0.0001 + (500 * 0.15 + 100 * 0.60) / 1e6
    assert result.version == V1_VERSION
    assert result.per_step_usd == [pytest.approx(llm, abs=1e-6), pytest.approx(search, abs=1e-6)]
    assert result.total_usd == pytest.approx(llm + search, abs=1e-6)


def test_v1_and_v2_agree_on_a_skill_running_its_usual_model_uncached() -> None:
    plan = Plan.model_validate({"steps": [{"skill": "llm_invoke", "model": "claude-haiku", "tokens_in": 1000,
                                           "tokens_out": 250, "retries": 1}]})
    assert simulate_v1(plan).total_usd == simulate_v2(plan).total_usd


def test_v2_prices_tokens_per_model_with_retries_and_cache_discount() -> None:
    result = simulate_v2(PLAN)
    # sonnet: first attempt 1000 fresh + 2000 cached at a tenth + 800 out; the retry resends everything
    first = (1000 * 3 + 2000 * 3 * 0.1 + 800 * 15) / 1e6
    retry = (3000 * 3 + 800 * 15) / 1e6
    assert result.version == V2_VERSION
    assert result.per_step_usd[0] == pytest.approx(first + retry + 2 * 0.0001, abs=1e-6)
    assert result.per_step_usd[1] == pytest.approx((500 * 0.15 + 100 * 0.6) / 1e6 + 0.0001, abs=1e-6)


def test_simulators_are_deterministic() -> None:
    assert [simulate_v2(PLAN) for _ in range(3)] == [simulate_v2(PLAN)] * 3
    assert simulate_v1(PLAN) == simulate_v1(Plan.model_validate(PLAN.model_dump()))


def test_cached_tokens_never_exceed_input_tokens() -> None:
    over = Plan.model_validate({"steps": [{"skill": "s", "model": "gpt-small", "tokens_in": 10, "tokens_out": 0,
                                           "cached_tokens_in": 1000}]})
    all_cached = Plan.model_validate({"steps": [{"skill": "s", "model": "gpt-small", "tokens_in": 10,
                                                 "tokens_out": 0, "cached_tokens_in": 10}]})
    assert simulate_v2(over) == simulate_v2(all_cached)


def test_input_hash_is_pinned() -> None:
    # If this changes, every stored provenance row stops deduplicating against new ones.
    assert PLAN.input_hash() == Plan.model_validate_json(PLAN.model_dump_json()).input_hash()
    assert PLAN.input_hash().startswith(PINNED_PREFIX)


PINNED_PREFIX = "937cc9d261bb2a0a"  # sha256 of the canonical JSON of PLAN


def test_drift_is_relative_to_v1() -> None:
    assert drift(0.10, 0.12) == pytest.approx(0.2)
    assert drift(0.10, 0.10) == 0
    assert drift(0.0, 0.005) == pytest.approx(0.5)  # V1 of zero counts as a cent
    # Only zero: a plan under a cent (most are) drifts relative to itself; at a cent, V2 at 3x V1 read 0.1.
    assert drift(0.001, 0.003) == pytest.approx(2.0)
    assert drift(0.004, 0.005) == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [{"steps": []}, {"steps": [{"skill": "s", "model": "m", "tokens_in": -1,
                                                             "tokens_out": 0}]}])
def test_bad_plans_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Plan.model_validate(bad)


def test_a_simulations_total_is_the_sum_of_its_steps_as_shown() -> None:
    """Each step is rounded to the millionth of a dollar; the total was the exact sum rounded once, a millionth
    apart from the steps it lists (two 10-token web_search steps: 0.000203 against 0.000102 + 0.000102)."""
    from incident_loop.costsim.simulators import simulate_v1, simulate_v2

    plan = Plan.model_validate({"steps": [{"skill": "web_search", "model": "small", "tokens_in": 10,
                                           "tokens_out": 10}] * 2})
    for result in (simulate_v1(plan), simulate_v2(plan)):
        assert result.total_usd == round(sum(result.per_step_usd), 6)
