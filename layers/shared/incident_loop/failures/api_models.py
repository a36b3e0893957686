"""Request bodies of the recovery-tracking API (strict where a wrong type is a client bug)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

RECOVERED_BY_MAX = 100  # failure_matches.recovered_by VARCHAR(100)


class RecoveryUpdate(BaseModel):
    """The outcome of a recovery attempt on a failure."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    succeeded: bool = Field(strict=True)
    by: str = Field(min_length=1, max_length=RECOVERED_BY_MAX)
    notes: str | None = Field(default=None, max_length=4000)


class RecoveryUpdateV1(BaseModel):
    """Seed 002's form of the same update: `PATCH /api/v1/failures/{id}/recovery`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    DEFAULT_BY: ClassVar[str] = "api-v1"  # when neither the body nor the token names anyone
    MAX_BY: ClassVar[int] = RECOVERED_BY_MAX

    recovery_succeeded: bool = Field(strict=True)
    notes: str | None = Field(default=None, max_length=4000)
    recovered_by: str | None = Field(default=None, min_length=1, max_length=RECOVERED_BY_MAX,
                                     description="Who recorded it; default: the bearer token's subject")
