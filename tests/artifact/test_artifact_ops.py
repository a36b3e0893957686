"""Operations' functions from the build: CostSim API and canary, alert delivery, deploy-time migrations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from artifact_support import Artifact, Recorder

from incident_loop.costsim.canary import CANARY_P95_THRESHOLD, CORPUS
from incident_loop.schemas.costsim import Plan


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@pytest.mark.invokes("CostSimApiFunction")
def test_costsim_api_simulate_returns_v1_and_v2_costs_and_records_provenance(cloud: Artifact) -> None:
    event = cloud.event("costsim_api_simulate.json")
    plan = Plan.model_validate(json.loads(event["body"])["plan"])

    response = cloud.invoke("CostSimApiFunction", event)

    assert response["statusCode"] == 200, response
    answer = body(response)
    assert answer["input_hash"] == plan.input_hash()
    assert answer["served"] == "v2" and answer["cost_usd"] == answer["v2"]["total_usd"] > 0
    assert answer["v1"]["total_usd"] > 0 and len(answer["v1"]["per_step_usd"]) == len(plan.steps)
    [row] = cloud.rows("SELECT tenant_id, served, v1_cost_usd FROM costsim_provenance WHERE input_hash = %(h)s",
                       h=plan.input_hash())
    assert row == {"tenant_id": cloud.tenant, "served": "v2", "v1_cost_usd": answer["v1"]["total_usd"]}


@pytest.mark.invokes("CostSimApiFunction")
def test_costsim_api_health_answers_without_a_token(cloud: Artifact) -> None:
    event = cloud.event("costsim_api_health.json")
    assert "authorizer" not in event["requestContext"]  # /health is Auth: NONE in the template

    response = cloud.invoke("CostSimApiFunction", event)

    assert response["statusCode"] == 200, response
    assert body(response) == {"status": "ok", "database": "ok",
                              "breakers": {"costsim-v2": "CLOSED", "catalog-persist": "CLOSED"}}


@pytest.mark.invokes("CostSimCanaryFunction")
def test_costsim_canary_runs_the_corpus_and_returns_its_stored_report(cloud: Artifact) -> None:
    report = cloud.invoke("CostSimCanaryFunction", cloud.event("costsim_canary_hourly.json"))

    assert set(report) == {"id", "passed", "drift_p95", "threshold", "incidents"}
    assert report["incidents"] == "in step"  # from the artifact: the breakers table and the database both read
    assert report["threshold"] == CANARY_P95_THRESHOLD
    assert report["passed"] is (report["drift_p95"] <= report["threshold"])
    [row] = cloud.rows("SELECT plans, passed, drift_p95 FROM costsim_canary_reports WHERE id = %(id)s", id=report["id"])
    assert row == {"plans": len(CORPUS), "passed": report["passed"], "drift_p95": report["drift_p95"]}


@pytest.mark.invokes("AlertWorkerFunction")
def test_alert_worker_delivers_an_alert_and_a_cloudwatch_alarm_to_alertmanager(
    cloud: Artifact, alert_receiver: Recorder
) -> None:
    event = cloud.event("alert_worker_breaker_and_alarm.json")
    # Raised now: an alert older than the breaker's last change, with the breaker closed, is dropped as stale
    # (another test of this module may have made costsim-v2's item).
    raised = datetime.now(UTC)
    alert = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**alert, "starts_at": raised.isoformat()})
    answer = cloud.invoke("AlertWorkerFunction", event)

    assert answer == {"batchItemFailures": []}
    posted = [r for r in alert_receiver.requests if (r.method, r.path) == ("POST", "/api/v2/alerts")]
    alerts = {alert["labels"]["alertname"]: alert for request in posted for alert in request.json()}
    assert set(alerts) == {"CostSimV2CircuitBreakerOpen", "CostSimV2HighDrift"}
    breaker, alarm = alerts["CostSimV2CircuitBreakerOpen"], alerts["CostSimV2HighDrift"]
    assert (breaker["labels"]["severity"], breaker["labels"]["breaker"]) == ("P1", "costsim-v2")
    assert datetime.fromisoformat(breaker["startsAt"]) == raised and "endsAt" not in breaker
    assert alarm["labels"] == {"alertname": "CostSimV2HighDrift", "severity": "P1", "service": "incident-loop",
                               "alarm": "incident-loop-dev-CostSimV2HighDrift", "source": "cloudwatch"}


@pytest.mark.invokes("AlertWorkerFunction")
def test_alert_worker_on_its_schedule_sends_the_firing_alert_of_an_open_breaker(
    cloud: Artifact, alert_receiver: Recorder
) -> None:
    """A breaker opened whose hook sent nothing: the minute's reconciliation sends its alert from its state."""
    import time

    import boto3

    from incident_loop.breaker import Breaker, BreakerConfig, ConsecutiveFailures, DynamoBreakerStore, MemoryHistory

    client = boto3.client("dynamodb", endpoint_url=cloud.cloud.endpoint_url, region_name="us-east-1")
    store = DynamoBreakerStore(cloud.cloud.app.table_names["BreakersTable"], client)
    breaker = Breaker("skill:artifact-open", BreakerConfig(rule=ConsecutiveFailures(1, 60.0)), store=store,
                      history=MemoryHistory(), clock=time.time, on_transition=[])
    breaker.record_failure("timeout")
    before = len(alert_receiver.requests)

    answer = cloud.invoke("AlertWorkerFunction", cloud.event("alert_worker_every_minute.json"))

    assert answer["firing"] >= 1
    posted = [alert for r in alert_receiver.requests[before:] if (r.method, r.path) == ("POST", "/api/v2/alerts")
              for alert in r.json()]
    [alert] = [a for a in posted if a["labels"].get("breaker") == "skill:artifact-open"]
    assert alert["labels"]["alertname"] == "CircuitBreakerOpen" and "endsAt" not in alert


@pytest.mark.invokes("MigrateFunction")
def test_migrate_answers_success_to_cloudformation_with_nothing_left_to_apply(cloud: Artifact) -> None:
    event = cloud.event("migrate_create.json")
    with Recorder() as cloudformation:
        event["ResponseURL"] = f"{cloudformation.url}/presigned-response?X-Amz-Signature=local"

        answer = cloud.invoke("MigrateFunction", event)

    assert answer is None
    [put] = cloudformation.requests
    assert (put.method, put.path) == ("PUT", "/presigned-response?X-Amz-Signature=local")
    response = put.json()
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["Data"] == {"applied": "0"}  # the module's database was migrated already
    assert {k: response[k] for k in ("StackId", "RequestId", "LogicalResourceId")} == {
        k: event[k] for k in ("StackId", "RequestId", "LogicalResourceId")}
