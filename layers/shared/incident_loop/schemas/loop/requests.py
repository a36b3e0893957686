"""What people send the loop over HTTP: a checkpoint decision, policy feedback, an agent's KPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ResolveCheckpoint(BaseModel):
    """A person's decision on a checkpoint."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    resolution: Literal["approve", "reject", "modify"]
    resolved_by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)
    modifications: dict[str, Any] | None = Field(
        default=None, description="For 'modify' (and only for it): action parameters that replace the suggested ones."
    )

    @model_validator(mode="after")
    def _modifications_go_with_modify(self) -> ResolveCheckpoint:
        # A 'modify' without them was applied as a plain approval; with 'approve' or 'reject' they were ignored.
        if self.resolution == "modify" and not self.modifications:
            raise ValueError("'modify' needs modifications: the action parameters that replace the suggested ones")
        if self.resolution != "modify" and self.modifications:
            raise ValueError(f"modifications apply to 'modify' only, not to {self.resolution!r}")
        return self


class PolicyFeedback(BaseModel):
    """A confirmation of a policy, or a regret (a run it blocked that should not have been)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


class KpiReport(BaseModel):
    """An agent's current KPI (success rate, 0..1)."""

    model_config = ConfigDict(extra="forbid")

    kpi: float = Field(ge=0, le=1, strict=True)  # a number: false or "0.5" is a client bug
