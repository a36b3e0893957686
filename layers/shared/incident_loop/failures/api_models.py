"""Request bodies of the recovery-tracking API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RecoveryUpdate(BaseModel):
    """The outcome of a recovery attempt on a failure."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    succeeded: bool
    by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(default=None, max_length=4000)
