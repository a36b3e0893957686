"""CostSim's request bodies: an agent plan to price, and the operators' switches of the V2 breaker."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Plan


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=500)
    by: str = Field(min_length=1, max_length=128)
    until: datetime | None = Field(default=None, description="When the disable expires (UTC, in the future);"
                                                             " none: until enabled")

    @field_validator("until")
    @classmethod
    def _until_is_ahead(cls, value: datetime | None) -> datetime | None:
        # A time already past paged (and filed a CostSim incident) and then read as CLOSED at once.
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError("until has passed: a disable must end in the future")
        return value


class EnableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=500)
