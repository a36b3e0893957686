"""Alerts that arrive: the alert queue and alert_worker against a real Prometheus Alertmanager."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from moto import mock_aws

from incident_loop.alerts import Alert, AlertDeliveryFailed, active_alerts, deliver
from incident_loop.local.runner import LocalApp, reset_container_caches

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture
def app(loop_env: str, alertmanager: Any) -> Iterator[LocalApp]:
    with mock_aws():
        local = LocalApp(ROOT, None, loop_env, parameters={"AlertmanagerUrl": alertmanager.url})
        local.provision()
        yield local
    for name in local.exported:
        os.environ.pop(name, None)
    reset_container_caches()


def _shown(url: str, name: str, marker: str) -> list[dict[str, Any]]:
    return [a for a in active_alerts(url) if a["labels"].get("alertname") == name
            and a["labels"].get("marker") == marker]


def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_firing_alert_reaches_alertmanager_and_its_resolution_resolves_it(app: LocalApp, alertmanager: Any) -> None:
    marker = uuid.uuid4().hex[:8]
    alert = Alert.firing("CostSimV2CircuitBreakerOpen", "P1", "V2 disabled: drift p95 0.31 > 0.2",
                         breaker="costsim-v2", marker=marker)
    app.send("AlertQueue", alert.model_dump_json())
    app.drain()
    [shown] = _eventually(lambda: _shown(alertmanager.url, alert.name, marker))
    assert shown["labels"]["severity"] == "P1" and shown["labels"]["breaker"] == "costsim-v2"
    assert shown["annotations"]["summary"].startswith("V2 disabled")
    assert shown["status"]["state"] == "active"

    app.send("AlertQueue", alert.resolved("V2 re-enabled after cooldown").model_dump_json())
    app.drain()
    assert _eventually(lambda: not _shown(alertmanager.url, alert.name, marker))
    assert app.dlq_messages("AlertQueue") == []


def test_alert_sent_while_alertmanager_is_down_is_delivered_once_it_is_back(app: LocalApp,
                                                                           alertmanager: Any) -> None:
    marker = uuid.uuid4().hex[:8]
    alert = Alert.firing("CostSimRapidCBTrips", "P1", "4 trips in 1h", marker=marker)
    alertmanager.stop()
    try:
        app.send("AlertQueue", alert.model_dump_json())
        app.deliver_round()
        assert app.depth("AlertQueue") == 1  # still queued, not lost
        assert app.dlq_messages("AlertQueue") == []
    finally:
        alertmanager.start()
    app.drain()
    assert _eventually(lambda: _shown(alertmanager.url, alert.name, marker))


def test_delivery_retries_with_backoff_then_raises_and_counts_the_failure() -> None:
    from incident_loop.local.services import free_port
    from incident_loop.observability import metrics

    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(AlertDeliveryFailed, match="did not accept 1 alert"):
        deliver([Alert.firing("X", "P2", "s")], closed, attempts=3, backoff_s=0.1)
    assert time.monotonic() - started >= 0.3  # 0.1 + 0.2 of backoff between three attempts
    assert metrics.metric_set["AlertSendFailures"]["Value"] == [1.0]
    metrics.clear_metrics()


def test_cloudwatch_alarm_of_a_seed_rule_fires_and_resolves_through_the_queue(app: LocalApp,
                                                                             alertmanager: Any) -> None:
    marker = uuid.uuid4().hex[:8]
    alarm = f"incident-loop-{marker}-CostSimV2HighDrift"

    def notification(state: str) -> str:
        message = {"AlarmName": alarm, "AlarmDescription": "P1: p95 drift > 0.2 for 5m (seed 001 rule)",
                   "NewStateValue": state, "NewStateReason": "Threshold Crossed: 5 datapoints > 0.2",
                   "StateChangeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"}
        return json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
                           "Message": json.dumps(message)})

    app.send("AlertQueue", notification("ALARM"))
    app.drain()

    def shown() -> list[dict[str, Any]]:
        return [a for a in active_alerts(alertmanager.url) if a["labels"].get("alarm") == alarm]

    [firing] = _eventually(shown)
    assert (firing["labels"]["alertname"], firing["labels"]["severity"]) == ("CostSimV2HighDrift", "P1")
    app.send("AlertQueue", notification("OK"))
    app.drain()
    assert _eventually(lambda: not shown())
