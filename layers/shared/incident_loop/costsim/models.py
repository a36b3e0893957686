"""What a simulator says a plan costs, and how far V2 drifts from V1 (the plan itself is schemas.costsim's)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SimResult(BaseModel):
    """A simulator's answer, in USD, with the version of the simulator that gave it."""

    model_config = ConfigDict(frozen=True)

    version: str
    total_usd: float
    per_step_usd: list[float]


def drift(v1: float, v2: float) -> float:
    """Relative disagreement of V2 with V1 (0 when they agree); V1 of zero counts as one cent. Only zero: most
    plans cost under a cent, and flooring every V1 at a cent read a V2 three times V1 as 10% drift, which
    neither the breaker (0.2) nor the canary ever saw."""
    return round(abs(v2 - v1) / (v1 if v1 > 0 else 0.01), 6)
