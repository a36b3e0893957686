"""The alert queue's records: our own alerts, and CloudWatch alarm notifications relayed by SNS."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import field_validator

from incident_loop.alerts import Alert

_SEVERITY = re.compile(r"^(P[123]):")


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



