"""Failures at the boundary (seed 002): the runtime's report, the parked record, the recovery API's bodies."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, ClassVar

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, model_validator

from incident_loop.schemas.text import first_text_error

FAILURE_ID_NAMESPACE = uuid.UUID("6f1c2e0a-9d4b-5c8e-a7f3-2b1d0c9e8a71")
RECOVERED_BY_MAX = 100  # failure_matches.recovered_by VARCHAR(100)


class FailureIn(BaseModel):
    """A failure as the runtime reports it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, max_length=255)
    tenant_id: str = Field(min_length=1, max_length=128)
    error_code: str = Field(min_length=1, max_length=255)
    error_message: str | None = Field(default=None, max_length=8000)
    skill_id: str | None = Field(default=None, max_length=100)
    step_index: int | None = Field(default=None, ge=0, le=2**31 - 1)  # failure_matches.step_index is INTEGER
    context: dict[str, Any] | None = None
    failure_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _storable(self) -> FailureIn:
        # A NUL or a lone surrogate (valid JSON: "\u0000") made PostgreSQL refuse the row with a DataError, which
        # counted against the shared catalog-persist breaker: five such messages opened it for every tenant.
        found = first_text_error(self.model_dump(exclude={"failure_id", "step_index"}))
        if found:
            raise ValueError(f"{found}: PostgreSQL cannot store it")
        return self

    def derived_id(self) -> uuid.UUID:
        """The producer's failure_id, or a UUIDv5 of everything the failure says: the same report, the same id."""
        if self.failure_id is not None:
            return self.failure_id
        content = json.dumps(self.model_dump(mode="json", exclude={"failure_id"}), sort_keys=True,
                             separators=(",", ":"), default=str)
        return uuid.uuid5(FAILURE_ID_NAMESPACE, content)


class FailureRecord(BaseModel):
    """One failure as persisted (the seed's 23 columns), and as the retry queue carries it when parked."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    run_id: str = Field(min_length=1, max_length=255)
    tenant_id: str = Field(min_length=1, max_length=128)
    error_code: str = Field(min_length=1, max_length=255)
    error_message: str | None = None
    catalog_entry_id: str | None = None
    match_type: str | None = None
    match_confidence: float | None = None
    category: str | None = None
    severity: str | None = None
    is_retryable: bool = False
    recovery_mode: str | None = None
    recovery_suggestion: str | None = None
    skill_id: str | None = Field(default=None, max_length=100)
    step_index: int | None = None
    context_json: dict[str, Any] | None = None
    created_at: datetime | None = None


class FailureInRecord(SqsRecordModel):
    """The runtime's failure queue: one failure to match and persist."""

    body: Json[FailureIn]  # type: ignore[assignment]


class ParkedFailureRecord(SqsRecordModel):
    """The retry queue: a matched failure that could not be written in time."""

    body: Json[FailureRecord]  # type: ignore[assignment]


# --------------------------------------------------------------------------- request bodies of the recovery API
# Strict where a wrong type is a client bug.


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
