"""The CostSim canary: stored reports, and an alert when V2 drifts from V1 on the corpus."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from fakes.emf import flushed, values

from incident_loop.costsim import canary as canary_module


def test_scheduled_canary_stores_a_passing_report(local_app: Any) -> None:
    answer = local_app.invoke("CostSimCanaryFunction", {"source": "aws.events", "detail-type": "Scheduled Event"})
    assert answer["passed"] is True and answer["drift_p95"] <= answer["threshold"] == 0.2
    from incident_loop.costsim.service import reports

    [latest, *_] = reports()
    assert latest["id"] == answer["id"]
    assert latest["plans"] == len(canary_module.CORPUS) == len(latest["details"])
    assert local_app.depth("AlertQueue") == 0


def test_failing_canary_raises_the_canary_failure_alert(local_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(canary_module, "CANARY_P95_THRESHOLD", 0.001)
    answer = local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})
    assert answer["passed"] is False
    queued = local_app.sqs.receive_message(QueueUrl=local_app.queue_urls["AlertQueue"])["Messages"]
    alert = json.loads(queued[0]["Body"])
    assert alert["name"] == "CostSimV2CanaryFailure" and alert["labels"]["report_id"] == answer["id"]


def test_a_canary_that_cannot_run_is_counted_and_alerted_as_a_failed_run(
        local_app: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 001: CostSimV2CanaryFailure is a canary run that failed in 24 h. Before, a V2 that raised (or a database
    that was down) ended the run with no report, no CostSimCanaryFailed and no alert: the alarm stayed OK."""
    def broken(plan: Any) -> Any:
        raise ArithmeticError("V2 divided by zero")

    monkeypatch.setattr(canary_module, "simulate_v2", broken)
    flushed(capsys)
    with pytest.raises(ArithmeticError):
        local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})
    assert values(flushed(capsys), "CostSimCanaryFailed") == [1.0]
    queued = local_app.sqs.receive_message(QueueUrl=local_app.queue_urls["AlertQueue"])["Messages"]
    alert = json.loads(queued[0]["Body"])
    assert alert["name"] == "CostSimV2CanaryFailure" and "ArithmeticError" in json.dumps(alert)


def test_a_trip_whose_incident_postgresql_could_not_take_is_filed_by_the_next_canary_and_resolved_likewise(
        local_app: Any, monkeypatch: pytest.MonkeyPatch, admin_conn: Any) -> None:
    """Before, a costsim-v2 trip while PostgreSQL was down paged, but its incident was never filed and the loop never
    learnt of it; a recovery in the same state left the incident open for good."""
    import psycopg

    from incident_loop import breaker_alerts, breakers
    from incident_loop.breaker import BreakerState
    from incident_loop.db import transaction

    def down(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("connection refused")

    def incidents() -> list[dict[str, Any]]:
        with transaction(tenant_id="platform") as conn:
            return conn.execute("SELECT breaker_version, resolved_at FROM costsim_incidents"
                                " WHERE breaker_name = 'costsim-v2' ORDER BY opened_at").fetchall()

    # costsim_incidents is global, and each test's breakers table is new (its versions start again at 1): earlier
    # tests' trips are not this one's
    admin_conn.execute("DELETE FROM costsim_incidents WHERE breaker_name = 'costsim-v2'")
    breaker = breakers.named(breakers.COSTSIM_V2)
    with monkeypatch.context() as m:
        m.setattr(breaker_alerts, "transaction", down)
        for _ in range(3):
            breaker.report_drift(0.9)  # three drift failures in a row: it trips, its hook cannot file
    assert breaker.status().state.value == "OPEN" and incidents() == []

    answer = local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})
    assert answer["incidents"] == "filed"
    [row] = incidents()
    assert row["resolved_at"] is None
    local_app.drain()  # the incident went into the loop, filed under the ops tenant
    with transaction(tenant_id="platform") as conn:
        [loop_incident] = conn.execute("SELECT error_type FROM incidents WHERE tenant_id = 'platform'").fetchall()
    assert loop_incident["error_type"] == "CostSimV2Drift"
    # Every later run sends the open incident again (its hook's send may have failed): ingest takes its key once
    assert local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})["incidents"] == "in step"
    local_app.drain()
    with transaction(tenant_id="platform") as conn:
        assert conn.execute("SELECT count(*) AS n FROM incidents WHERE tenant_id = 'platform'").fetchone()["n"] == 1

    # A breaker read as CLOSED at a version before the open incident's (it tripped between the two reads): that
    # incident is a later trip's, not the closed breaker's, and stays open
    closed_before = breaker.status().version - 1
    stale = SimpleNamespace(get=lambda name: breaker.refresh().model_copy(
        update={"state": BreakerState.CLOSED, "version": closed_before}))
    assert breaker_alerts.reconcile_costsim_incidents(stale) == "in step"
    assert incidents()[0]["resolved_at"] is None

    with monkeypatch.context() as m:
        m.setattr(breaker_alerts, "transaction", down)
        breaker.enable("oncall", "fixed")  # its hook cannot resolve the incident
    assert incidents()[0]["resolved_at"] is None
    assert local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})["incidents"] == "resolved"
    assert incidents()[0]["resolved_at"] is not None


def _costsim_rows() -> list[dict[str, Any]]:
    from incident_loop.db import transaction

    with transaction(tenant_id="platform") as conn:
        return conn.execute("SELECT breaker_version, trip_id, resolved_at FROM costsim_incidents"
                            " WHERE breaker_name = 'costsim-v2' ORDER BY opened_at").fetchall()


def _loop_incidents() -> int:
    from incident_loop.db import transaction

    with transaction(tenant_id="platform") as conn:
        return conn.execute("SELECT count(*) AS n FROM incidents WHERE tenant_id = 'platform'").fetchone()["n"]


def test_a_trip_at_a_version_an_earlier_breakers_table_used_is_filed_and_reaches_the_loop(
        local_app: Any, admin_conn: Any) -> None:
    """Breaker versions start again with a new breakers table (a stack made again against this database, a restore,
    the item deleted). Before, a trip at a version an earlier table had used found that trip's row: it was neither
    filed nor sent into the loop (whose key, costsim-v2:trip:<version>, ingest had also taken already)."""
    from incident_loop import breakers

    admin_conn.execute("DELETE FROM costsim_incidents WHERE breaker_name = 'costsim-v2'")
    admin_conn.execute(  # an earlier table's first trip, long resolved
        "INSERT INTO costsim_incidents (id, breaker_name, breaker_version, reason, loop_incident_key, opened_at,"
        " resolved_at) VALUES ('csi_old', 'costsim-v2', 1, 'old trip', 'costsim-v2:trip:1',"
        " '2026-01-01', '2026-01-01 00:10')")
    before = _loop_incidents()
    breaker = breakers.named(breakers.COSTSIM_V2)
    for _ in range(3):
        breaker.report_drift(0.9)  # trips: version 0 -> 1
    assert breaker.status().state.value == "OPEN" and breaker.status().version == 1
    local_app.sqs.purge_queue(QueueUrl=local_app.queue_urls["AlertQueue"])  # its page is not under test
    local_app.drain()

    rows = _costsim_rows()
    assert [(r["breaker_version"], r["trip_id"] is None) for r in rows] == [(1, True), (1, False)]
    assert _loop_incidents() - before == 1


def test_a_short_trip_whose_hook_could_not_file_it_is_filed_and_resolved_by_the_next_canary(
        local_app: Any, admin_conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a trip over before the hourly canary (the cooldown is 5 minutes) left no trace the reconciler could
    see once the breaker closed: its page went out, and the loop never learnt of it."""
    import psycopg

    from incident_loop import breaker_alerts, breakers

    def down(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("connection refused")

    admin_conn.execute("DELETE FROM costsim_incidents WHERE breaker_name = 'costsim-v2'")
    before = _loop_incidents()
    breaker = breakers.named(breakers.COSTSIM_V2)
    with monkeypatch.context() as m:
        m.setattr(breaker_alerts, "transaction", down)
        for _ in range(3):
            breaker.report_drift(0.9)  # trips; its hook cannot file
    assert breaker.status().state.value == "OPEN" and _costsim_rows() == []
    breaker.enable("oncall", "fixed")  # over before the canary runs (PostgreSQL is back)

    assert local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})["incidents"] == "filed"
    [row] = _costsim_rows()
    assert row["trip_id"] and row["resolved_at"] is not None
    local_app.sqs.purge_queue(QueueUrl=local_app.queue_urls["AlertQueue"])
    local_app.drain()
    assert _loop_incidents() - before == 1
    # the next run finds it filed: once per trip
    assert local_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})["incidents"] == "in step"
    assert len(_costsim_rows()) == 1


def test_a_short_trip_filed_late_leaves_the_incident_of_a_trip_since_open(local_app: Any, admin_conn: Any) -> None:
    """The reconciler reads the incidents, then the breaker (CLOSED, an earlier trip unfiled); a new trip's hook files
    its incident in between. Filing the earlier trip must not resolve the new one's: it is filed resolved."""
    import time

    from incident_loop import breaker_alerts, breakers

    admin_conn.execute("DELETE FROM costsim_incidents WHERE breaker_name = 'costsim-v2'")
    breaker = breakers.named(breakers.COSTSIM_V2)

    def read_then_trip(name: str) -> Any:
        record = breaker.refresh()  # CLOSED, an earlier trip (t1) over and unfiled
        for _ in range(3):
            breaker.report_drift(0.9)  # a new trip now: its hook files its incident
        return record.model_copy(update={"trip_id": "t1", "tripped_at": time.time() - 600})

    assert breaker_alerts.reconcile_costsim_incidents(SimpleNamespace(get=read_then_trip)) == "filed"
    rows = {row["trip_id"]: row["resolved_at"] for row in _costsim_rows()}
    assert breaker.status().state.value == "OPEN" and len(rows) == 2
    assert rows.pop("t1") is not None
    assert list(rows.values()) == [None]  # the new trip's incident stays open while its breaker is
