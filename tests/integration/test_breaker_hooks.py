"""A breaker's trip queues its alert whatever else its hook fails at: costsim-v2's incident row needs
PostgreSQL, and with PostgreSQL down the alert used to be lost with it (the reconciler of
tests/integration/test_alerts.py re-sends it within a minute besides)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fakes.clock import Clock
from moto import mock_aws

from incident_loop import aws, breakers, db, settings
from incident_loop.breaker import Breaker, BreakerState, DynamoBreakerStore, MemoryHistory, config_for, ensure_table

TABLE = "breakers-hooks"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="alerts-hooks")["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(dynamodb, TABLE)
        monkeypatch.setenv("ALERT_QUEUE_URL", url)
        # PostgreSQL unreachable (connection refused at once: no wait)
        monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
        monkeypatch.delenv("INCIDENT_QUEUE_URL", raising=False)
        settings.get_settings.cache_clear()
        db.reset_connection()
        aws.reset()
        yield {"sqs": sqs, "url": url, "dynamodb": dynamodb}
        settings.get_settings.cache_clear()
        db.reset_connection()
        aws.reset()


def _queued(env: dict[str, Any]) -> list[dict[str, Any]]:
    out = env["sqs"].receive_message(QueueUrl=env["url"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in out.get("Messages", [])]


def _breaker(env: dict[str, Any], name: str, clock: Clock) -> Breaker:
    return Breaker(name, config_for(name), store=DynamoBreakerStore(TABLE, env["dynamodb"]),
                   history=MemoryHistory(), on_transition=breakers.HOOKS, clock=clock)


def test_a_skill_breaker_trip_queues_its_alert(env: dict[str, Any]) -> None:
    breaker = _breaker(env, "skill:hooks", Clock())
    for _ in range(5):
        breaker.record_failure("boom")
    assert breaker.status().state is BreakerState.OPEN
    assert [a["name"] for a in _queued(env)] == ["CircuitBreakerOpen"]


def test_a_costsim_trip_queues_its_alert_while_postgresql_is_down(env: dict[str, Any]) -> None:
    breaker = _breaker(env, "costsim-v2", Clock())
    for _ in range(3):
        breaker.report_drift(0.9)  # three drift failures in a row: it trips
    assert breaker.status().state is BreakerState.OPEN
    assert [a["name"] for a in _queued(env)] == ["CostSimV2CircuitBreakerOpen"]
