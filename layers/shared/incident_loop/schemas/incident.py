"""What a failed agent run reports: the incident, as the API and the ingest queue accept it."""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Any

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

_SEPARATOR = "\x1f"


class Severity(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def weight(self) -> int:
        return {"low": 1, "medium": 2, "high": 3, "critical": 4}[self.value]


class IncidentIn(BaseModel):
    """A failure of one agent run. The tenant comes from the caller's identity, not from here.

    Every bound is at most what storage keeps, so what the API accepts is stored whole: skill_id
    and error_message as failure_matches keeps them (VARCHAR(100), the catalog's 8000), the ids within
    the failure record's 255 (run_id, error_code <- error_type).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    agent_id: str = Field(min_length=1, max_length=128)
    run_id: str = Field(min_length=1, max_length=128)
    error_type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    error_message: str = Field(min_length=1, max_length=8000)
    skill_id: str | None = Field(default=None, max_length=100)
    severity: Severity = Severity.MEDIUM
    context: dict[str, Any] = Field(default_factory=dict)
    incident_key: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("context")
    @classmethod
    def _context_is_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > 16_000:
            raise ValueError("context is larger than 16000 bytes once serialised")
        return value

    def derived_key(self) -> str:
        """The client's incident key, or one derived from what identifies this failure of this run."""
        if self.incident_key:
            return self.incident_key
        fields = [self.agent_id, self.run_id, self.error_type, self.error_message]
        # Joined by a separator no field holds; a field that holds it (a client may send one) makes the
        # key of the fields as a JSON list, which no joined text equals (JSON escapes the separator),
        # so two different incidents never share a key and the keys of every other incident stay as
        # they were.
        if any(_SEPARATOR in field for field in fields):
            raw = json.dumps(fields, separators=(",", ":"))
        else:
            raw = _SEPARATOR.join(fields)
        return "k_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


class IncidentMessage(IncidentIn):
    """The direct SQS entry: internal producers name the tenant in the message."""

    tenant_id: str = Field(min_length=1, max_length=128)


class IncidentAccepted(BaseModel):
    """The answer to a reported incident (HTTP 202)."""

    incident_id: str
    loop_id: str
    duplicate: bool
    status_url: str


class IncidentRecord(SqsRecordModel):
    """An SQS record of the ingest queue."""

    body: Json[IncidentMessage]  # type: ignore[assignment]
