"""Alerts that arrive: queued on SQS, delivered to Prometheus Alertmanager's API v2 by alert_worker.

A firing alert carries startsAt; its resolution is the same alert (same labels) with endsAt,
which Alertmanager uses to mark it resolved. Delivery retries with backoff inside the
invocation; what still fails is raised, so SQS redelivers it later and, past maxReceiveCount,
parks it on the DLQ. Nothing is dropped while Alertmanager is down.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from incident_loop.observability import logger, metrics
from incident_loop.settings import get_settings

SERVICE = "incident-loop"


class AlertDeliveryFailed(RuntimeError):
    """Alertmanager did not accept the alert after every attempt."""


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


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def enqueue(alert: Alert, queue_url: str | None = None) -> None:
    """Put the alert on the alert queue (ALERT_QUEUE_URL)."""
    url = queue_url or get_settings().alert_queue_url
    if not url:
        raise RuntimeError("ALERT_QUEUE_URL is not configured")
    _sqs().send_message(QueueUrl=url, MessageBody=alert.model_dump_json())
    logger.info("alert queued", alert=alert.name, resolved=alert.ends_at is not None)


def deliver(alerts: list[Alert], base_url: str | None = None, *, attempts: int = 3, backoff_s: float = 0.2,
            timeout_s: float = 5.0) -> None:
    """POST the alerts to Alertmanager, retrying with exponential backoff (0.2 s, 0.4 s, ...)."""
    url = (base_url or get_settings().alertmanager_url).rstrip("/") + "/api/v2/alerts"
    payload = json.dumps([a.to_alertmanager() for a in alerts]).encode()
    last: Exception | None = None
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=payload, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - configured URL
                if 200 <= response.status < 300:
                    logger.info("alerts delivered", count=len(alerts), attempt=attempt + 1)
                    return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500:
                break  # Alertmanager refused the alert itself: retrying will not help
        if attempt + 1 < attempts:
            time.sleep(backoff_s * 2**attempt)
    metrics.add_metric(name="AlertSendFailures", unit=MetricUnit.Count, value=1)
    logger.warning("alert delivery failed", count=len(alerts), error=str(last))
    raise AlertDeliveryFailed(f"alertmanager at {url} did not accept {len(alerts)} alert(s): {last}")


def active_alerts(base_url: str) -> list[dict[str, Any]]:
    """What Alertmanager currently shows (GET /api/v2/alerts)."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/api/v2/alerts", timeout=5) as response:  # noqa: S310
        return list(json.loads(response.read()))
