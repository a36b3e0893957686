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
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop import aws
from incident_loop.observability import logger, metrics
from incident_loop.schemas.alerts import Alert
from incident_loop.settings import get_settings


class AlertDeliveryFailed(RuntimeError):
    """Alertmanager did not accept the alert after every attempt."""


def enqueue(alert: Alert, queue_url: str | None = None) -> None:
    """Put the alert on the alert queue (ALERT_QUEUE_URL)."""
    url = queue_url or get_settings().alert_queue_url
    if not url:
        raise RuntimeError("ALERT_QUEUE_URL is not configured")
    aws.sqs().send_message(QueueUrl=url, MessageBody=alert.model_dump_json())
    logger.info("alert queued", alert=alert.name, resolved=alert.ends_at is not None)


ATTEMPTS, BACKOFF_S, TIMEOUT_S = 3, 0.2, 5.0


def delivery_worst_case_s(attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S, timeout_s: float = TIMEOUT_S
                          ) -> float:
    """The longest deliver() takes: an Alertmanager that accepts connections and never answers (15.6 s)."""
    return attempts * timeout_s + sum(backoff_s * 2**i for i in range(attempts - 1))


def deliver(alerts: list[Alert], base_url: str | None = None, *, attempts: int = ATTEMPTS,
            backoff_s: float = BACKOFF_S, timeout_s: float = TIMEOUT_S) -> None:
    """POST the alerts to Alertmanager, retrying with exponential backoff (0.2 s, 0.4 s, ...); at most
    delivery_worst_case_s()."""
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
