"""CostSim behind its breaker, end to end on moto, PostgreSQL and a real Alertmanager."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from incident_loop.alerts import active_alerts
from incident_loop.db import get_connection
from incident_loop.local.runner import LocalApp, reset_container_caches

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = {"role": "operator"}


@pytest.fixture
def app(loop_env: str, alertmanager: Any) -> Iterator[LocalApp]:
    with mock_aws():
        local = LocalApp(ROOT, None, loop_env, parameters={"AlertmanagerUrl": alertmanager.url})
        local.provision()
        yield local
    for name in local.exported:
        os.environ.pop(name, None)
    reset_container_caches()


def plan(model: str, tokens_in: int) -> dict[str, Any]:
    return {"plan": {"steps": [{"skill": "llm_invoke", "model": model, "tokens_in": tokens_in, "tokens_out": 300}]}}


def simulate(app: LocalApp, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = app.request("POST", "/costsim/simulate", tenant, body)
    assert status == 200, answer
    return dict(answer)


def test_v2_serves_while_the_breaker_is_closed_and_provenance_is_kept_once(app: LocalApp, tenant: str) -> None:
    first = simulate(app, tenant, plan("claude-haiku", 1234))
    again = simulate(app, tenant, plan("claude-haiku", 1234))
    assert first["served"] == "v2" and first["drift"] == 0.0 and first["provenance_recorded"] is True
    assert again["provenance_recorded"] is False
    rows = get_connection().execute("SELECT count(*) AS n FROM costsim_provenance WHERE input_hash = %(h)s",
                                    {"h": first["input_hash"]}).fetchone()
    assert rows["n"] == 1


def test_drift_trips_the_breaker_v1_is_served_an_incident_enters_the_loop_and_the_alert_arrives(
    app: LocalApp, tenant: str, alertmanager: Any
) -> None:
    answers = [simulate(app, tenant, plan("claude-sonnet", 1000 + n)) for n in range(4)]
    assert [a["served"] for a in answers] == ["v2", "v2", "v2", "v1"]  # three drifts > 0.2 trip it
    assert "disabled by its circuit breaker" in answers[3]["note"]
    status = app.request("GET", "/costsim/status", tenant)[1]
    assert status["breaker"]["state"] == "OPEN"
    assert status["last_incident"]["loop_incident_key"].startswith("costsim-v2:trip:")
    assert app.request("GET", "/health", tenant)[1]["breakers"]["costsim-v2"] == "OPEN"
    app.drain()  # the trip's incident through the loop, and its alert to Alertmanager
    incidents = get_connection().execute(
        "SELECT i.error_type, t.current_stage FROM incidents i JOIN loop_traces t ON t.incident_id = i.id"
        " WHERE i.tenant_id = 'platform' AND i.incident_key = %(k)s",
        {"k": status["last_incident"]["loop_incident_key"]}).fetchall()
    assert [(r["error_type"], r["current_stage"]) for r in incidents] == [("CostSimV2Drift", "recovery_suggested")]
    shown = _wait(lambda: [a for a in active_alerts(alertmanager.url)
                           if a["labels"]["alertname"] == "CostSimV2CircuitBreakerOpen"])
    assert shown and shown[0]["labels"]["breaker"] == "costsim-v2"
    # an operator brings V2 back: the alert resolves and V2 serves again
    assert app.request("POST", "/costsim/breaker/enable", tenant, {"by": "oncall"}, claims=OPERATOR)[0] == 200
    app.drain()
    assert _wait(lambda: not [a for a in active_alerts(alertmanager.url)
                              if a["labels"]["alertname"] == "CostSimV2CircuitBreakerOpen"])
    assert simulate(app, tenant, plan("claude-haiku", 777))["served"] == "v2"
    history = get_connection().execute(
        "SELECT from_state, to_state FROM breaker_history WHERE breaker_name = 'costsim-v2' ORDER BY version"
    ).fetchall()
    assert [(h["from_state"], h["to_state"]) for h in history][-2:] == [("CLOSED", "OPEN"), ("OPEN", "CLOSED")]


def test_only_operators_switch_the_breaker_and_a_disable_expires(app: LocalApp, tenant: str) -> None:
    body = {"reason": "provider price change under review", "by": "oncall"}
    assert app.request("POST", "/costsim/breaker/disable", tenant, body)[0] == 403
    until = time.time() + 2
    status, answer = app.request("POST", "/costsim/breaker/disable", tenant,
                                 {**body, "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))},
                                 claims=OPERATOR)
    assert status == 200 and answer["breaker"]["state"] == "DISABLED"
    assert simulate(app, tenant, plan("claude-haiku", 4321))["served"] == "v1"
    time.sleep(max(0.0, until - time.time()) + 1.5)
    assert simulate(app, tenant, plan("claude-haiku", 4322))["served"] == "v2"


def test_canary_reports_and_bad_plans(app: LocalApp, tenant: str) -> None:
    app.invoke("CostSimCanaryFunction", {"source": "aws.events"})
    reports = app.request("GET", "/costsim/canary/reports", tenant, query={"limit": "5"})[1]["reports"]
    assert reports and reports[0]["passed"] is True
    status, answer = app.request("POST", "/costsim/simulate", tenant, {"plan": {"steps": []}})
    assert status == 422 and answer["errors"][0]["field"].startswith("body.plan.steps")


def _wait(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)



