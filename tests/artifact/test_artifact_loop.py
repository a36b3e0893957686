"""The loop's functions from the build: authorizer, ingest (API and SQS), the four bridges and the loop API.

One incident goes all the way round: ingest creates it, each bridge takes the event of events/ with
the ids the previous step created, and the loop API resolves its checkpoint and shows it complete.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from artifact_support import CHECKPOINT, EVENTS, INCIDENT, LOOP, PATTERN, POLICY, RECOVERY, Artifact

from incident_loop.auth.tokens import KeySet, issue
from incident_loop_dev.local.artifact import InvocationError


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def sqs_ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


# --------------------------------------------------------------------------- the authorizer


def token_event(cloud: Artifact, token: str) -> dict[str, Any]:
    event = cloud.event("authorizer_token.json")
    event["authorizationToken"] = f"Bearer {token}"
    return event


@pytest.mark.invokes("AuthorizerFunction")
def test_authorizer_passes_the_tokens_tenant_and_role_to_the_routes(cloud: Artifact) -> None:
    event = token_event(cloud, issue(cloud.cloud.keys, cloud.tenant, "operator"))

    answer = cloud.invoke("AuthorizerFunction", event)

    assert answer["context"] == {"tenant_id": cloud.tenant, "role": "operator"}
    assert answer["principalId"] == f"{cloud.tenant}/client"
    [statement] = answer["policyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*"


@pytest.mark.invokes("AuthorizerFunction")
def test_authorizer_answers_unauthorized_to_a_forged_token(cloud: Artifact) -> None:
    forged = issue(KeySet.generate(), cloud.tenant, "operator")  # same kid, another secret

    with pytest.raises(InvocationError) as raised:
        cloud.invoke("AuthorizerFunction", token_event(cloud, forged))

    assert raised.value.payload["errorMessage"] == "Unauthorized"


@pytest.mark.invokes("AuthorizerFunction")
def test_api_events_carry_the_context_the_authorizer_produces(cloud: Artifact) -> None:
    produced = cloud.invoke("AuthorizerFunction", token_event(cloud, issue(cloud.cloud.keys, cloud.tenant)))["context"]
    carried = {path.name: json.loads(path.read_text())["requestContext"]["authorizer"]
               for path in sorted(EVENTS.glob("*.json"))
               if "authorizer" in (json.loads(path.read_text()).get("requestContext") or {})}

    assert carried, "no API event in events/ carries an authorizer context"
    assert produced == {"tenant_id": cloud.tenant, "role": ""}
    assert {name: sorted(ctx) for name, ctx in carried.items()} == {name: sorted(produced) for name in carried}


# --------------------------------------------------------------------------- ingest


@pytest.fixture(scope="module")
def incident(cloud: Artifact) -> dict[str, Any]:
    """POST /incidents (the first search timeout) through the built IngestFunction."""
    response = cloud.invoke("IngestFunction", cloud.event("ingest_api_timeout_1.json"))
    assert response["statusCode"] == 202, response
    return dict(body(response))


@pytest.mark.invokes("IngestFunction")
def test_ingest_api_answers_202_with_an_incident_id_and_stores_the_incident(
    cloud: Artifact, incident: dict[str, Any]
) -> None:
    assert incident["incident_id"].startswith("inc_") and incident["duplicate"] is False
    assert incident["status_url"] == f"/loops/{incident['incident_id']}"
    [row] = cloud.rows("SELECT tenant_id, agent_id, run_id, error_type, severity FROM incidents WHERE id = %(id)s",
                       id=incident["incident_id"])
    assert row == {"tenant_id": cloud.tenant, "agent_id": "agent-research-a1", "run_id": "run-7f3a9c",
                   "error_type": "SkillTimeoutError", "severity": "high"}
    assert cloud.stages(incident["incident_id"]) == ["incident_created"]


@pytest.mark.invokes("IngestFunction")
def test_ingest_api_refuses_an_invalid_incident_with_422(cloud: Artifact) -> None:
    response = cloud.invoke("IngestFunction", cloud.event("ingest_api_invalid.json"))

    assert response["statusCode"] == 422
    fields = {error["field"] for error in body(response)["errors"]}
    assert {"body.error_message", "body.severity"} <= fields
    assert cloud.rows("SELECT id FROM incidents WHERE run_id = 'run-x'") == []


@pytest.mark.invokes("IngestFunction")
def test_ingest_sqs_records_the_incident_of_the_queue_message(cloud: Artifact) -> None:
    event = cloud.event("ingest_sqs_rate_limit.json")

    answer = cloud.invoke("IngestFunction", event)

    assert answer == {"batchItemFailures": []}
    [row] = cloud.rows("SELECT id, tenant_id, error_type FROM incidents WHERE run_id = 'run-c3d4e5'")
    assert (row["tenant_id"], row["error_type"]) == (cloud.tenant, "RateLimitError")
    assert cloud.stages(row["id"]) == ["incident_created"]


# --------------------------------------------------------------------------- the four bridges


@pytest.fixture(scope="module")
def matched(cloud: Artifact, incident: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bridge 1 on a batch of the incident's envelope and a poison record: (event, answer)."""
    event = cloud.event("match_pattern_batch_with_poison.json",
                        {INCIDENT: incident["incident_id"], LOOP: incident["loop_id"]})
    return event, cloud.invoke("MatchPatternFunction", event)


@pytest.mark.invokes("MatchPatternFunction")
def test_match_pattern_fails_only_the_poison_record_of_its_batch(
    cloud: Artifact, matched: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    event, answer = matched
    good, poison = sqs_ids(event)

    assert answer == {"batchItemFailures": [{"itemIdentifier": poison}]}


@pytest.mark.invokes("MatchPatternFunction")
def test_match_pattern_records_its_stage_and_hands_the_pattern_to_bridge_2(
    cloud: Artifact, incident: dict[str, Any], matched: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    assert "pattern_matched" in cloud.stages(incident["incident_id"])
    [pattern] = cloud.rows("SELECT first_incident_id, occurrence_count FROM failure_patterns"
                           " WHERE tenant_id = %(t)s AND error_type = 'SkillTimeoutError'", t=cloud.tenant)
    assert pattern == {"first_incident_id": incident["incident_id"], "occurrence_count": 1}


@pytest.fixture(scope="module")
def pattern_id(cloud: Artifact, incident: dict[str, Any], matched: Any) -> str:
    """The pattern Bridge 1 handed to the recovery queue."""
    [handoff] = cloud.take("RecoveryQueue")
    assert (handoff["incident_id"], handoff["stage"]) == (incident["incident_id"], "recovery_suggested")
    return str(handoff["payload"]["pattern_id"])


@pytest.fixture(scope="module")
def suggested(cloud: Artifact, incident: dict[str, Any], pattern_id: str) -> dict[str, Any]:
    event = cloud.event("suggest_recovery_new_pattern.json",
                        {INCIDENT: incident["incident_id"], LOOP: incident["loop_id"], PATTERN: pattern_id})
    return dict(cloud.invoke("SuggestRecoveryFunction", event))


@pytest.mark.invokes("SuggestRecoveryFunction")
def test_suggest_recovery_opens_a_checkpoint_for_a_new_patterns_recovery(
    cloud: Artifact, incident: dict[str, Any], suggested: dict[str, Any]
) -> None:
    assert suggested == {"batchItemFailures": []}
    assert "recovery_suggested" in cloud.stages(incident["incident_id"])
    [checkpoint] = cloud.rows("SELECT checkpoint_type, resolved_at FROM human_checkpoints"
                              " WHERE incident_id = %(id)s", id=incident["incident_id"])
    assert checkpoint == {"checkpoint_type": "approve_recovery", "resolved_at": None}


@pytest.fixture(scope="module")
def resolved(cloud: Artifact, incident: dict[str, Any], suggested: dict[str, Any]) -> dict[str, Any]:
    """POST /checkpoints/{id}/resolve (approve) through the built LoopApiFunction."""
    [checkpoint] = cloud.rows("SELECT id FROM human_checkpoints WHERE incident_id = %(id)s", id=incident["incident_id"])
    return dict(cloud.invoke("LoopApiFunction", cloud.event("loop_api_resolve_checkpoint.json",
                                                            {CHECKPOINT: checkpoint["id"]})))


@pytest.mark.invokes("LoopApiFunction")
def test_loop_api_approval_resumes_the_loop_at_bridge_3(
    cloud: Artifact, incident: dict[str, Any], resolved: dict[str, Any]
) -> None:
    assert resolved["statusCode"] == 200, resolved
    answer = body(resolved)
    assert answer["resumed_at"] == "policy_generated"
    assert (answer["checkpoint"]["resolution"], answer["checkpoint"]["resolved_by"]) == ("approve",
                                                                                        "oncall@example.com")
    assert answer["recovery"]["status"] == "approved"


@pytest.fixture(scope="module")
def recovery_id(cloud: Artifact, incident: dict[str, Any], resolved: dict[str, Any]) -> str:
    """The recovery the approval handed to the policy queue."""
    [handoff] = cloud.take("PolicyQueue")
    assert (handoff["incident_id"], handoff["stage"]) == (incident["incident_id"], "policy_generated")
    return str(handoff["payload"]["recovery_id"])


@pytest.fixture(scope="module")
def generated(cloud: Artifact, incident: dict[str, Any], recovery_id: str) -> dict[str, Any]:
    event = cloud.event("generate_policy_recovery_approved.json",
                        {INCIDENT: incident["incident_id"], LOOP: incident["loop_id"], RECOVERY: recovery_id})
    return dict(cloud.invoke("GeneratePolicyFunction", event))


@pytest.mark.invokes("GeneratePolicyFunction")
def test_generate_policy_creates_a_shadow_policy_for_the_approved_recovery(
    cloud: Artifact, incident: dict[str, Any], recovery_id: str, generated: dict[str, Any]
) -> None:
    assert generated == {"batchItemFailures": []}
    assert "policy_generated" in cloud.stages(incident["incident_id"])
    [policy] = cloud.rows("SELECT mode, source_recovery_id FROM policy_rules WHERE tenant_id = %(t)s", t=cloud.tenant)
    assert policy == {"mode": "shadow", "source_recovery_id": recovery_id}


@pytest.fixture(scope="module")
def policy_id(cloud: Artifact, incident: dict[str, Any], generated: dict[str, Any]) -> str:
    """The policy Bridge 3 handed to the routing queue."""
    [handoff] = cloud.take("RoutingQueue")
    assert (handoff["incident_id"], handoff["stage"]) == (incident["incident_id"], "routing_adjusted")
    return str(handoff["payload"]["policy_id"])


@pytest.fixture(scope="module")
def adjusted(cloud: Artifact, incident: dict[str, Any], policy_id: str) -> dict[str, Any]:
    event = cloud.event("adjust_routing_shadow_policy.json",
                        {INCIDENT: incident["incident_id"], LOOP: incident["loop_id"], POLICY: policy_id})
    return dict(cloud.invoke("AdjustRoutingFunction", event))


@pytest.mark.invokes("AdjustRoutingFunction")
def test_adjust_routing_adjusts_the_agent_and_completes_the_loop(
    cloud: Artifact, incident: dict[str, Any], policy_id: str, adjusted: dict[str, Any]
) -> None:
    assert adjusted == {"batchItemFailures": []}
    assert cloud.stages(incident["incident_id"])[-1] == "routing_adjusted"
    [routing] = cloud.rows("SELECT agent_id, source_policy_id FROM routing_adjustments WHERE tenant_id = %(t)s",
                           t=cloud.tenant)
    assert routing == {"agent_id": "agent-research-a1", "source_policy_id": policy_id}
    [trace] = cloud.rows("SELECT is_complete FROM loop_traces WHERE incident_id = %(id)s", id=incident["incident_id"])
    assert trace["is_complete"] is True


@pytest.mark.invokes("LoopApiFunction")
def test_loop_api_shows_the_completed_loop(
    cloud: Artifact, incident: dict[str, Any], adjusted: dict[str, Any]
) -> None:
    event = cloud.event("loop_api_get_loop.json", {INCIDENT: incident["incident_id"]})

    response = cloud.invoke("LoopApiFunction", event)

    assert response["statusCode"] == 200, response
    console = response["body"]
    assert f"Incident: {incident['incident_id']}" in console
    assert "Loop Status: COMPLETE (is_complete: true)" in console
    for stage in ("incident_created", "pattern_matched", "recovery_suggested", "policy_generated",
                  "routing_adjusted"):
        assert f"{stage} ✅" in console


@pytest.mark.invokes("LoopApiFunction")
def test_loop_api_hides_the_loop_from_another_tenant(cloud: Artifact, incident: dict[str, Any]) -> None:
    event = cloud.event("loop_api_get_loop.json", {INCIDENT: incident["incident_id"]})
    event["requestContext"]["authorizer"]["tenant_id"] = "tenant-someone-else"

    response = cloud.invoke("LoopApiFunction", event)

    assert response["statusCode"] == 404, response

