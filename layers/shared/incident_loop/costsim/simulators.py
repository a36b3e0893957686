"""The two simulators. Both pure, versioned and deterministic: same plan, same answer, forever."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from incident_loop.costsim.models import SimResult
from incident_loop.schemas.costsim import Plan, PlanStep

V1_VERSION = "v1.2025-12"
V2_VERSION = "v2.2026-11"

# V1: a static table per skill, priced as if every skill ran on its usual model and nothing
# was cached: (per call, per million tokens in, per million tokens out), in USD.
V1_SKILL_RATES = {
    "web_search": (Decimal("0.0001"), Decimal("0.15"), Decimal("0.60")),
    "llm_invoke": (Decimal("0.0001"), Decimal("0.80"), Decimal("4.00")),
    "code_exec": (Decimal("0.0001"), Decimal("0.15"), Decimal("0.60")),
    "kv_store": (Decimal("0.0001"), Decimal("0"), Decimal("0")),
    "webhook_send": (Decimal("0.0001"), Decimal("0"), Decimal("0")),
    "slack_send": (Decimal("0.0001"), Decimal("0"), Decimal("0")),
    "voyage_embed": (Decimal("0.0001"), Decimal("0.06"), Decimal("0")),
}
V1_DEFAULT_RATES = (Decimal("0.0001"), Decimal("1.00"), Decimal("4.00"))

# V2: price per million tokens (input, output) by model; cached input tokens cost a tenth.
V2_PRICES = {
    "gpt-small": (Decimal("0.15"), Decimal("0.60")),
    "gpt-large": (Decimal("2.50"), Decimal("10.00")),
    "claude-haiku": (Decimal("0.80"), Decimal("4.00")),
    "claude-sonnet": (Decimal("3.00"), Decimal("15.00")),
    "voyage-3": (Decimal("0.06"), Decimal("0")),
}
V2_DEFAULT_PRICE = (Decimal("1.00"), Decimal("4.00"))
V2_CACHED_DISCOUNT = Decimal("0.10")
V2_SKILL_OVERHEAD = Decimal("0.0001")  # per attempt: the skill's own infrastructure
_MILLION = Decimal(1_000_000)
_CENT_FRACTION = Decimal("0.000001")


def _result(version: str, steps: list[Decimal]) -> SimResult:
    """The steps' costs, each rounded to the millionth of a dollar, and their total: the sum of what is shown
    (the total of the exact costs, rounded once, differed from the steps' sum by a millionth)."""
    per_step = [_usd(c) for c in steps]
    return SimResult(version=version, total_usd=_usd(sum((Decimal(str(c)) for c in per_step), Decimal(0))),
                     per_step_usd=per_step)


def _usd(value: Decimal) -> float:
    return float(value.quantize(_CENT_FRACTION, rounding=ROUND_HALF_EVEN))


def _v1_step(step: PlanStep) -> Decimal:
    call, rate_in, rate_out = V1_SKILL_RATES.get(step.skill, V1_DEFAULT_RATES)
    return (1 + step.retries) * (call + (step.tokens_in * rate_in + step.tokens_out * rate_out) / _MILLION)


def simulate_v1(plan: Plan) -> SimResult:
    """The skill's static rates, for every attempt (a retry costs a whole step again)."""
    steps = [_v1_step(s) for s in plan.steps]
    return _result(V1_VERSION, steps)


def _v2_step(step: PlanStep) -> Decimal:
    price_in, price_out = V2_PRICES.get(step.model, V2_DEFAULT_PRICE)
    cached = min(step.cached_tokens_in, step.tokens_in)
    fresh = step.tokens_in - cached
    first = (fresh * price_in + cached * price_in * V2_CACHED_DISCOUNT + step.tokens_out * price_out) / _MILLION
    # Retries resend the whole prompt (the provider's cache is not counted on a retry) and regenerate.
    retry = (step.tokens_in * price_in + step.tokens_out * price_out) / _MILLION
    return first + step.retries * retry + (1 + step.retries) * V2_SKILL_OVERHEAD


def simulate_v2(plan: Plan) -> SimResult:
    """Token pricing per model, with retries and cached-token discounts."""
    steps = [_v2_step(s) for s in plan.steps]
    return _result(V2_VERSION, steps)
