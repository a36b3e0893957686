"""What people send the loop over HTTP: a checkpoint decision, policy feedback, an agent's KPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ResolveCheckpoint(BaseModel):
    """A person's decision on a checkpoint."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    resolution: Literal["approve", "reject", "modify"]
    resolved_by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)
    modifications: dict[str, Any] | None = Field(
        default=None, description="For 'modify': action parameters that replace the suggested ones."
    )


class PolicyFeedback(BaseModel):
    """A confirmation of a policy, or a regret (a run it blocked that should not have been)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


class KpiReport(BaseModel):
    """An agent's current KPI (success rate, 0..1)."""

    model_config = ConfigDict(extra="forbid")

    kpi: float = Field(ge=0, le=1, strict=True)  # a number: false or "0.5" is a client bug
