"""CostSim V2's gauges as its alarms read them (EMF as Powertools prints it, the alarms as template.yaml defines them).

CostSimV2CircuitBreakerOpenAlarm (Maximum of CostSimBreakerOpen over one minute, missing data not breaching) stays
in ALARM while costsim-v2 is down, traffic or not; CostSimHighConsecutiveFailuresAlarm (> 2) pages for the streak
that takes V2 down, never for a breaker coming back up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fakes.clock import Clock
from fakes.emf import flushed, values
from moto import mock_aws

from incident_loop import breaker_alerts
from incident_loop.breaker import (
    AnyOf,
    Breaker,
    BreakerRecord,
    BreakerState,
    ConsecutiveFailures,
    Drift,
    DynamoBreakerStore,
    MemoryHistory,
    config_for,
    ensure_table,
)
from incident_loop.breaker.rules import p95_min_samples
from incident_loop.costsim import service
from incident_loop_dev.local.cloud import scheduled_event
from incident_loop_dev.local.runner import FakeContext, handler_module
from incident_loop_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def alarm(logical_id: str) -> dict[str, Any]:
    return dict(template()["Resources"][logical_id]["Properties"])


TABLE = "breakers-gauges"


@pytest.fixture
def costsim_v2(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Breaker, Clock]]:
    # The hook as deployed (breakers.HOOKS -> breaker_alerts.on_transition), without SQS or PostgreSQL.
    monkeypatch.setattr(breaker_alerts, "enqueue", lambda alert: None)
    monkeypatch.setattr(breaker_alerts, "_open_costsim_incident", lambda t: None)
    monkeypatch.setattr(breaker_alerts, "_resolve_costsim_incident", lambda breaker, at: None)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(client, TABLE)
        clock = Clock()
        yield Breaker("costsim-v2", config_for("costsim-v2"), store=DynamoBreakerStore(TABLE, client),
                      history=MemoryHistory(), on_transition=[breaker_alerts.on_transition], clock=clock), clock


def _trip(breaker: Breaker, clock: Clock) -> None:
    for _ in range(3):  # three samples in a row > 0.2
        breaker.report_drift(0.5)
        clock.now += 2
    assert breaker.status().state is BreakerState.OPEN


def _threshold() -> float:
    props = alarm("CostSimHighConsecutiveFailuresAlarm")
    assert (props["MetricName"], props["Statistic"], props["ComparisonOperator"]) == \
        ("CostSimConsecutiveFailures", "Maximum", "GreaterThanThreshold")
    return float(props["Threshold"])


def test_an_operator_enable_does_not_report_the_tripped_streak(
        costsim_v2: tuple[Breaker, Clock], capsys: pytest.CaptureFixture[str]) -> None:
    breaker, clock = costsim_v2
    _trip(breaker, clock)
    flushed(capsys)  # the trip's own minute: paging then is right
    clock.now += 3600  # an hour later (the alarm went OK a minute after the last simulation)

    breaker.enable("oncall", "fixed upstream pricing")

    assert breaker.status().consecutive_drift_failures == 0
    emitted = values(flushed(capsys), "CostSimConsecutiveFailures")
    assert max(emitted) <= _threshold(), (
        f"enable emitted CostSimConsecutiveFailures {emitted} (the streak before the reset): the P2 alarm "
        f"(> {_threshold():g}) fires as the breaker recovers")


def test_an_auto_recovery_does_not_report_the_tripped_streak(
        costsim_v2: tuple[Breaker, Clock], capsys: pytest.CaptureFixture[str]) -> None:
    breaker, clock = costsim_v2
    _trip(breaker, clock)
    flushed(capsys)
    clock.now += 3600  # long past the cooldown: the next simulation is the probe

    assert breaker.allow()  # OPEN -> HALF_OPEN
    breaker.report_drift(0.01)  # a good probe: HALF_OPEN -> CLOSED

    assert breaker.status().state is BreakerState.CLOSED
    emitted = values(flushed(capsys), "CostSimConsecutiveFailures")
    assert max(emitted) <= _threshold(), (
        f"the auto-recovery emitted CostSimConsecutiveFailures {emitted}: the P2 alarm fires as V2 recovers")


def _every_minute() -> list[str]:
    """The functions the template runs every minute whatever the traffic."""
    out = []
    for logical_id, resource in template()["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "Schedule" and event["Properties"].get("Schedule") == "rate(1 minute)":
                out.append(logical_id)
    return out


def test_an_open_costsim_breaker_keeps_its_alarm_fed_when_nobody_simulates(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    props = alarm("CostSimV2CircuitBreakerOpenAlarm")
    assert (props["MetricName"], props["Period"], props["EvaluationPeriods"]) == ("CostSimBreakerOpen", 60, 1)
    assert props.get("OKActions"), "its OK resolves the relayed alert in Alertmanager"
    assert _every_minute() == ["AlertWorkerFunction"]

    now = time.time()
    disabled = BreakerRecord(name="costsim-v2", state=BreakerState.DISABLED, version=7, reason="runbook: V2 off",
                             changed_by="oncall", changed_at=now - 600, opened_at=now - 600)
    monkeypatch.setattr(DynamoBreakerStore, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(DynamoBreakerStore, "all", lambda self: [disabled])
    monkeypatch.setattr(breaker_alerts, "deliver", lambda alerts: None)  # Alertmanager takes them
    app = handler_module(ROOT / "functions" / "alert_worker", "app.lambda_handler", "alert_worker_gauges")
    flushed(capsys)

    answer = app.lambda_handler(scheduled_event("AlertWorkerFunction"), FakeContext(function_name="alert-worker"))

    assert answer["firing"] == 1  # the reconciler knows the breaker is down ...
    fed = values(flushed(capsys), "CostSimBreakerOpen")
    treat = props.get("TreatMissingData", "missing")
    assert 1.0 in fed or treat == "ignore", (
        f"costsim-v2 is DISABLED, yet the every-minute run emitted CostSimBreakerOpen {fed}; only "
        "POST /costsim/simulate and a transition emit it, and with TreatMissingData "
        f"{treat} the alarm goes OK (and resolves its Alertmanager alert) one minute after the last simulation, "
        "re-firing a P1 page on the next one")



@pytest.mark.parametrize(("samples", "emitted"), [(19, False), (20, True)])
def test_the_drift_gauge_waits_for_a_p95_that_is_not_the_largest_sample(
        costsim_v2: tuple[Breaker, Clock], capsys: pytest.CaptureFixture[str], samples: int, emitted: bool) -> None:
    """CostSimV2HighDrift pages P1 on CostSimDriftP95 > 0.2: over fewer than 20 samples that p95 is the largest one,
    so one drifting plan after a recovery paged."""
    breaker, _ = costsim_v2
    for value in [0.01] * (samples - 1) + [0.5]:
        breaker.report_drift(value)
    flushed(capsys)
    service._emit_breaker_gauges(breaker)
    fed = values(flushed(capsys), "CostSimDriftP95")
    assert fed == ([0.01] if emitted else [])


def test_the_drift_gauge_waits_for_as_many_samples_as_the_breakers_own_rule(
        costsim_v2: tuple[Breaker, Clock], capsys: pytest.CaptureFixture[str]) -> None:
    """The gauge pages on what would trip: a costsim-v2 configured with a Drift of another minimum is gauged at that
    minimum, not at the default's."""
    breaker, _ = costsim_v2
    breaker.config = dataclasses.replace(
        breaker.config, rule=AnyOf((Drift(min_samples=30), ConsecutiveFailures(5, None))))
    assert p95_min_samples(breaker.config.rule) == 30 and p95_min_samples(ConsecutiveFailures(5, None)) is None
    for value in [0.01] * 24 + [0.5]:
        breaker.report_drift(value)
    flushed(capsys)
    service._emit_breaker_gauges(breaker)
    assert values(flushed(capsys), "CostSimDriftP95") == []  # 25 samples: enough for the default, not for this rule
    for _ in range(5):
        breaker.report_drift(0.01)
    flushed(capsys)
    service._emit_breaker_gauges(breaker)
    assert values(flushed(capsys), "CostSimDriftP95") == [0.01]


def test_an_operators_disable_is_no_trip_it_files_no_incident_and_counts_toward_no_rapid_trips(
        costsim_v2: tuple[Breaker, Clock], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 001 counts trips (CostSimRapidCBTrips: > 3 in 1 h) and files an incident per trip. Before, an operator
    switching V2 off for a price review four times in an hour paged P1 as rapid trips, and each switch was filed into
    the loop as a failure to learn from."""
    breaker, clock = costsim_v2
    filed: list[Any] = []
    alerted: list[Any] = []
    monkeypatch.setattr(breaker_alerts, "_open_costsim_incident", filed.append)
    monkeypatch.setattr(breaker_alerts, "enqueue", alerted.append)
    flushed(capsys)
    for _ in range(4):
        breaker.disable("provider price change under review", "oncall")
        clock.now += 60
        breaker.enable("oncall")
        clock.now += 60
    docs = flushed(capsys)
    assert sum(values(docs, "CostSimBreakerDisabled")) == 0 and filed == []
    assert [a.name for a in alerted if a.ends_at is None] == ["CostSimV2CircuitBreakerOpen"] * 4  # V2 off: said

    _trip(breaker, clock)  # the breaker's own trip still counts and is filed
    assert sum(values(flushed(capsys), "CostSimBreakerDisabled")) == 1 and len(filed) == 1
