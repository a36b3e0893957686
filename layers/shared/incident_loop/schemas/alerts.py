"""Alerts as the alert queue carries them: our own, and CloudWatch alarm notifications relayed by SNS."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVICE = "incident-loop"
_SEVERITY = re.compile(r"^(P[123]):")


class Alert(BaseModel):
    """One alert, firing (no ends_at) or resolved (ends_at set)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    severity: Literal["P1", "P2", "P3"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = "https://console.aws.amazon.com/cloudwatch/home#alarmsV2:"

    @classmethod
    def firing(cls, name: str, severity: Literal["P1", "P2", "P3"], summary: str, **labels: str) -> Alert:
        return cls(name=name, severity=severity, labels=labels, annotations={"summary": summary},
                   starts_at=datetime.now(UTC))

    def resolved(self, summary: str | None = None, at: datetime | None = None) -> Alert:
        """The same alert, resolved (Alertmanager matches it by its labels)."""
        annotations = {**self.annotations, **({"summary": summary} if summary else {})}
        return self.model_copy(update={"ends_at": at or datetime.now(UTC), "annotations": annotations})

    def to_alertmanager(self) -> dict[str, Any]:
        """The alert as Alertmanager's API v2 (`POST /api/v2/alerts`) takes it."""
        body: dict[str, Any] = {
            "labels": {"alertname": self.name, "severity": self.severity, "service": SERVICE, **self.labels},
            "annotations": self.annotations,
            "startsAt": self.starts_at.isoformat(),
            "generatorURL": self.generator_url,
        }
        if self.ends_at is not None:
            body["endsAt"] = self.ends_at.isoformat()
        return body




def from_cloudwatch(notification: dict[str, Any]) -> Alert:
    """A CloudWatch alarm state change (the seed's rules) as the alert Alertmanager receives.

    ALARM fires the alert; OK resolves it (same labels: the rule and the stage's alarm name).
    """
    full_name = notification["AlarmName"]
    rule = full_name.rsplit("-", 1)[-1]
    description = notification.get("AlarmDescription") or ""
    severity = (_SEVERITY.match(description) or [None, "P2"])[1]
    changed = datetime.fromisoformat(notification["StateChangeTime"].replace("+0000", "+00:00"))
    alert = Alert(name=rule, severity=severity, labels={"alarm": full_name, "source": "cloudwatch"},  # type: ignore[arg-type]
                  annotations={"summary": description, "reason": notification.get("NewStateReason", "")},
                  starts_at=changed)
    return alert.resolved(at=changed) if notification["NewStateValue"] == "OK" else alert


class AlertRecord(SqsRecordModel):
    """A queued Alert, or an SNS notification carrying a CloudWatch alarm state change."""

    body: Alert  # type: ignore[assignment]

    @field_validator("body", mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
            return from_cloudwatch(json.loads(data["Message"]))
        return data
