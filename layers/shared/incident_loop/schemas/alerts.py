"""The alert queue's records."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json

from incident_loop.alerts import Alert


class AlertRecord(SqsRecordModel):
    body: Json[Alert]  # type: ignore[assignment]
