"""CostSim behind its breaker, end to end on moto, PostgreSQL and a real Alertmanager."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import EndpointConnectionError

from incident_loop import breakers
from incident_loop.alerts import active_alerts
from incident_loop.db import get_connection, transaction
from incident_loop_dev.local.runner import LocalApp

OPERATOR = {"role": "operator"}


def plan(model: str, tokens_in: int) -> dict[str, Any]:
    return {"plan": {"steps": [{"skill": "llm_invoke", "model": model, "tokens_in": tokens_in, "tokens_out": 300}]}}


def simulate(alerting_app: LocalApp, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = alerting_app.request("POST", "/costsim/simulate", tenant, body)
    assert status == 200, answer
    return dict(answer)


def test_v2_serves_while_the_breaker_is_closed_and_provenance_is_kept_once(alerting_app: LocalApp, tenant: str) -> None:
    first = simulate(alerting_app, tenant, plan("claude-haiku", 1234))
    again = simulate(alerting_app, tenant, plan("claude-haiku", 1234))
    assert first["served"] == "v2" and first["drift"] == 0.0 and first["provenance_recorded"] is True
    assert again["provenance_recorded"] is False
    with transaction(tenant_id=tenant) as conn:
        rows = conn.execute("SELECT count(*) AS n FROM costsim_provenance WHERE input_hash = %(h)s",
                            {"h": first["input_hash"]}).fetchone()
    assert rows["n"] == 1


def test_drift_trips_the_breaker_v1_is_served_an_incident_enters_the_loop_and_the_alert_arrives(
    alerting_app: LocalApp, tenant: str, alertmanager: Any, eventually: Any
) -> None:
    from incident_loop.observability import metrics

    gauges: list[tuple[str, float]] = []
    real_add = metrics.add_metric

    def spy(name: str, **kwargs: Any) -> None:
        gauges.append((name, kwargs["value"]))
        real_add(name=name, **kwargs)

    metrics.add_metric = spy  # type: ignore[method-assign]
    try:
        answers = [simulate(alerting_app, tenant, plan("claude-sonnet", 1000 + n)) for n in range(4)]
    finally:
        metrics.add_metric = real_add  # type: ignore[method-assign]
    assert ("CostSimConsecutiveFailures", 2) in gauges and ("CostSimBreakerOpen", 1) in gauges
    assert [a["served"] for a in answers] == ["v2", "v2", "v2", "v1"]  # three drifts > 0.2 trip it
    assert "disabled by its circuit breaker" in answers[3]["note"]
    status = alerting_app.request("GET", "/costsim/status", tenant)[1]
    assert status["breaker"]["state"] == "OPEN"
    assert status["last_incident"]["loop_incident_key"].startswith("costsim-v2:trip:")
    assert alerting_app.request("GET", "/health", tenant)[1]["breakers"]["costsim-v2"] == "OPEN"
    alerting_app.drain()  # the trip's incident through the loop, and its alert to Alertmanager
    with transaction(tenant_id="platform") as conn:  # CostSim's incidents are the ops tenant's
        incidents = conn.execute(
            "SELECT i.error_type, t.current_stage FROM incidents i JOIN loop_traces t ON t.incident_id = i.id"
            " WHERE i.tenant_id = 'platform' AND i.incident_key = %(k)s",
            {"k": status["last_incident"]["loop_incident_key"]}).fetchall()
    assert [(r["error_type"], r["current_stage"]) for r in incidents] == [("CostSimV2Drift", "recovery_suggested")]
    shown = eventually(lambda: [a for a in active_alerts(alertmanager.url)
                           if a["labels"]["alertname"] == "CostSimV2CircuitBreakerOpen"])
    assert shown and shown[0]["labels"]["breaker"] == "costsim-v2"
    # an operator brings V2 back: the alert resolves and V2 serves again
    assert alerting_app.request("POST", "/costsim/breaker/enable", tenant, {"by": "oncall"}, claims=OPERATOR)[0] == 200
    alerting_app.drain()
    assert eventually(lambda: not [a for a in active_alerts(alertmanager.url)
                              if a["labels"]["alertname"] == "CostSimV2CircuitBreakerOpen"])
    assert simulate(alerting_app, tenant, plan("claude-haiku", 777))["served"] == "v2"
    history = get_connection().execute(
        "SELECT from_state, to_state FROM breaker_history WHERE breaker_name = 'costsim-v2' ORDER BY version"
    ).fetchall()
    assert [(h["from_state"], h["to_state"]) for h in history][-2:] == [("CLOSED", "OPEN"), ("OPEN", "CLOSED")]


def test_only_operators_switch_the_breaker_and_a_disable_expires(alerting_app: LocalApp, tenant: str) -> None:
    body = {"reason": "provider price change under review", "by": "oncall"}
    assert alerting_app.request("POST", "/costsim/breaker/disable", tenant, body)[0] == 403
    until = time.time() + 2
    status, answer = alerting_app.request("POST", "/costsim/breaker/disable", tenant,
                                 {**body, "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))},
                                 claims=OPERATOR)
    assert status == 200 and answer["breaker"]["state"] == "DISABLED"
    assert simulate(alerting_app, tenant, plan("claude-haiku", 4321))["served"] == "v1"
    time.sleep(max(0.0, until - time.time()) + 1.5)
    assert simulate(alerting_app, tenant, plan("claude-haiku", 4322))["served"] == "v2"


def test_canary_reports_and_bad_plans(alerting_app: LocalApp, tenant: str) -> None:
    alerting_app.invoke("CostSimCanaryFunction", {"source": "aws.events"})
    reports = alerting_app.request("GET", "/costsim/canary/reports", tenant, query={"limit": "5"})[1]["reports"]
    assert reports and reports[0]["passed"] is True
    status, answer = alerting_app.request("POST", "/costsim/simulate", tenant, {"plan": {"steps": []}})
    assert status == 422 and answer["errors"][0]["field"].startswith("body.plan.steps")




class _Unreachable:
    """A DynamoDB client whose every call fails as a missing network does."""

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        return call


def test_the_breaker_routes_answer_503_with_retry_after_when_dynamodb_is_unreachable(
        local_app: LocalApp, tenant: str, monkeypatch: Any) -> None:
    """An operator's disable that did not take effect, or a status that could not be read, is a 503 to retry (it
    was an unhandled 500)."""
    monkeypatch.setattr(breakers.named(breakers.COSTSIM_V2).store, "client", _Unreachable())
    for method, path, body in (("POST", "/costsim/breaker/disable", {"reason": "price change", "by": "oncall"}),
                               ("POST", "/costsim/breaker/enable", {"reason": "fixed", "by": "oncall"}),
                               ("GET", "/costsim/status", None)):
        status, headers, answer = local_app.respond(method, path, tenant, body, claims=OPERATOR)
        assert (status, answer["message"]) == (503, "the breaker store is unavailable, retry later"), (path, answer)
        assert headers["Retry-After"]
