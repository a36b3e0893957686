"""An agent plan and what a simulator says it costs."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field


class PlanStep(BaseModel):
    """One step of a plan: a skill run on a model, with its expected tokens and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skill: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=128)
    # Counts are JSON integers: "1200" or 1200.0 is a client bug, not something to coerce.
    tokens_in: int = Field(ge=0, le=10_000_000, strict=True)
    tokens_out: int = Field(ge=0, le=10_000_000, strict=True)
    retries: int = Field(default=0, ge=0, le=20, strict=True)
    cached_tokens_in: int = Field(default=0, ge=0, le=10_000_000, strict=True)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[PlanStep] = Field(min_length=1, max_length=500)

    def canonical_json(self) -> str:
        """The plan as compact JSON, fields in model order (pinned by a test): what the hash is taken of."""
        return self.model_dump_json()

    def input_hash(self, canonical: str | None = None) -> str:
        """sha256 of the canonical JSON of the plan: the key provenance is deduplicated on."""
        return hashlib.sha256((canonical or self.canonical_json()).encode()).hexdigest()


class SimResult(BaseModel):
    """A simulator's answer, in USD, with the version of the simulator that gave it."""

    model_config = ConfigDict(frozen=True)

    version: str
    total_usd: float
    per_step_usd: list[float]


def drift(v1: float, v2: float) -> float:
    """Relative disagreement of V2 with V1 (0 when they agree); V1 of zero counts as one cent."""
    return round(abs(v2 - v1) / max(v1, 0.01), 6)
