"""Alerts that arrive: the alert queue and alert_worker against a real Prometheus Alertmanager."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from incident_loop.alerts import AlertDeliveryFailed, active_alerts, deliver
from incident_loop.schemas.alerts import Alert
from incident_loop_dev.local.runner import LocalApp


def _shown(url: str, name: str, marker: str) -> list[dict[str, Any]]:
    return [a for a in active_alerts(url) if a["labels"].get("alertname") == name
            and a["labels"].get("marker") == marker]


def test_firing_alert_reaches_alertmanager_and_its_resolution_resolves_it(
    alerting_app: LocalApp, alertmanager: Any, eventually: Any
) -> None:
    marker = uuid.uuid4().hex[:8]
    alert = Alert.firing("CostSimV2CircuitBreakerOpen", "P1", "V2 disabled: drift p95 0.31 > 0.2",
                         breaker="costsim-v2", marker=marker)
    alerting_app.send("AlertQueue", alert.model_dump_json())
    alerting_app.drain()
    [shown] = eventually(lambda: _shown(alertmanager.url, alert.name, marker))
    assert shown["labels"]["severity"] == "P1" and shown["labels"]["breaker"] == "costsim-v2"
    assert shown["annotations"]["summary"].startswith("V2 disabled")
    assert shown["status"]["state"] == "active"

    alerting_app.send("AlertQueue", alert.resolved("V2 re-enabled after cooldown").model_dump_json())
    alerting_app.drain()
    assert eventually(lambda: not _shown(alertmanager.url, alert.name, marker))
    assert alerting_app.dlq_messages("AlertQueue") == []


def test_alert_sent_while_alertmanager_is_down_is_delivered_once_it_is_back(
    alerting_app: LocalApp, alertmanager: Any, eventually: Any
) -> None:
    marker = uuid.uuid4().hex[:8]
    alert = Alert.firing("CostSimRapidCBTrips", "P1", "4 trips in 1h", marker=marker)
    alertmanager.stop()
    try:
        alerting_app.send("AlertQueue", alert.model_dump_json())
        alerting_app.deliver_round()
        assert alerting_app.depth("AlertQueue") == 1  # still queued, not lost
        assert alerting_app.dlq_messages("AlertQueue") == []
    finally:
        alertmanager.start()
    alerting_app.drain()
    assert eventually(lambda: _shown(alertmanager.url, alert.name, marker))


def test_delivery_retries_with_backoff_then_raises_and_counts_the_failure() -> None:
    from incident_loop.observability import metrics
    from incident_loop_dev.local.services import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(AlertDeliveryFailed, match="did not accept 1 alert"):
        deliver([Alert.firing("X", "P2", "s")], closed, attempts=3, backoff_s=0.1)
    assert time.monotonic() - started >= 0.3  # 0.1 + 0.2 of backoff between three attempts
    assert metrics.metric_set["AlertSendFailures"]["Value"] == [1.0]
    metrics.clear_metrics()


def test_cloudwatch_alarm_of_a_seed_rule_fires_and_resolves_through_the_queue(
    alerting_app: LocalApp, alertmanager: Any, eventually: Any
) -> None:
    marker = uuid.uuid4().hex[:8]
    alarm = f"incident-loop-{marker}-CostSimV2HighDrift"

    def notification(state: str) -> str:
        message = {"AlarmName": alarm, "AlarmDescription": "P1: p95 drift > 0.2 for 5m (seed 001 rule)",
                   "NewStateValue": state, "NewStateReason": "Threshold Crossed: 5 datapoints > 0.2",
                   "StateChangeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"}
        return json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
                           "Message": json.dumps(message)})

    alerting_app.send("AlertQueue", notification("ALARM"))
    alerting_app.drain()

    def shown() -> list[dict[str, Any]]:
        return [a for a in active_alerts(alertmanager.url) if a["labels"].get("alarm") == alarm]

    [firing] = eventually(shown)
    assert (firing["labels"]["alertname"], firing["labels"]["severity"]) == ("CostSimV2HighDrift", "P1")
    alerting_app.send("AlertQueue", notification("OK"))
    alerting_app.drain()
    assert eventually(lambda: not shown())


# --- the breakers' alerts, reconciled every minute with the breakers as they are ------------------------

def _breaker(app: LocalApp, name: str, clock: list[float]) -> Any:
    """A breaker on the app's table whose transitions send nothing (as when the hook's SendMessage failed)."""
    import boto3

    from incident_loop.breaker import Breaker, BreakerConfig, ConsecutiveFailures, DynamoBreakerStore, MemoryHistory

    store = DynamoBreakerStore(app.table_names["BreakersTable"], boto3.client("dynamodb", region_name="us-east-1"))
    return Breaker(name, BreakerConfig(rule=ConsecutiveFailures(2, 60.0), cooldown_s=60.0), store=store,
                   history=MemoryHistory(), clock=lambda: clock[0], on_transition=[])


def _tick(app: LocalApp) -> Any:
    from incident_loop_dev.local.cloud import scheduled_event

    return app.invoke("AlertWorkerFunction", scheduled_event("AlertWorkerFunction"))


def _breaker_shown(url: str, breaker: str) -> list[dict[str, Any]]:
    return [a for a in active_alerts(url) if a["labels"].get("breaker") == breaker]


def test_an_open_breaker_whose_alert_was_never_sent_is_shown_and_its_recovery_resolves_it(
    alerting_app: LocalApp, alertmanager: Any, eventually: Any
) -> None:
    """The hook's one message was lost (its SendMessage failed): the reconciler sends the firing alert from the
    breaker's state on its next run, and the resolution once the breaker has closed."""
    name = f"skill:reconcile-{uuid.uuid4().hex[:6]}"
    clock = [time.time()]
    breaker = _breaker(alerting_app, name, clock)
    breaker.record_failure("boom")
    breaker.record_failure("boom")
    assert breaker.status().state.value == "OPEN" and _breaker_shown(alertmanager.url, name) == []

    assert _tick(alerting_app)["firing"] >= 1
    [shown] = eventually(lambda: _breaker_shown(alertmanager.url, name))
    assert shown["labels"]["alertname"] == "CircuitBreakerOpen" and shown["status"]["state"] == "active"

    breaker.enable("ops", "fixed")
    assert _tick(alerting_app)["resolved"] >= 1
    assert eventually(lambda: not _breaker_shown(alertmanager.url, name))


def test_a_queued_firing_alert_of_a_breaker_closed_since_is_dropped(
    alerting_app: LocalApp, alertmanager: Any
) -> None:
    """A firing alert redelivered after the breaker recovered would raise a P1 for an outage that is over; a
    firing alert of a breaker still open is delivered."""
    name = f"skill:stale-{uuid.uuid4().hex[:6]}"
    clock = [time.time() - 30]
    breaker = _breaker(alerting_app, name, clock)
    breaker.record_failure("boom")
    breaker.record_failure("boom")
    firing = Alert(name="CircuitBreakerOpen", severity="P1", labels={"breaker": name},
                   annotations={"summary": f"{name} is open"}, starts_at=datetime.fromtimestamp(clock[0], UTC))
    clock[0] += 10
    breaker.enable("ops", "fixed")
    alerting_app.send("AlertQueue", firing.model_dump_json())
    alerting_app.drain()
    assert alerting_app.depth("AlertQueue") == 0 and alerting_app.dlq_messages("AlertQueue") == []
    assert _breaker_shown(alertmanager.url, name) == []

    breaker.record_failure("boom")
    breaker.record_failure("boom")  # open again: its firing alert is no longer stale
    alerting_app.send("AlertQueue", firing.model_copy(update={"starts_at": datetime.now(UTC)}).model_dump_json())
    alerting_app.drain()
    assert len(_breaker_shown(alertmanager.url, name)) == 1


def test_a_firing_breaker_alert_is_delivered_when_the_breakers_table_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stale check reads the breaker; a page never waits on DynamoDB: unreadable, the alert goes as it is."""
    from pathlib import Path

    from incident_loop.breaker import DynamoBreakerStore, StoreUnavailable
    from incident_loop.schemas.alerts import AlertRecord
    from incident_loop_dev.local.runner import handler_module

    root = Path(__file__).resolve().parents[2]
    app = handler_module(root / "functions" / "alert_worker", "app.lambda_handler", "_alert_worker_unit")
    delivered: list[Any] = []

    def unreadable(self: Any, name: str) -> Any:
        raise StoreUnavailable("get_item on breakers: ProvisionedThroughputExceededException")

    monkeypatch.setattr(DynamoBreakerStore, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(DynamoBreakerStore, "get", unreadable)
    monkeypatch.setattr(app, "deliver", delivered.extend)
    alert = Alert.firing("CircuitBreakerOpen", "P1", "skill:x is OPEN", breaker="skill:x")
    app.record_handler(AlertRecord.model_validate({
        "messageId": "m1", "receiptHandle": "r", "body": alert.model_dump_json(), "attributes": {
            "ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "s",
            "ApproximateFirstReceiveTimestamp": "1"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AlertQueue", "awsRegion": "us-east-1"}))
    assert [a.labels["breaker"] for a in delivered] == ["skill:x"]
