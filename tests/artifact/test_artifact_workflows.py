"""The workflow functions from the build: the API (submit, status, replay), the runner (SQS), audit retention.

One run goes round: WorkflowApiFunction stores and queues it, WorkflowRunnerFunction runs its kv_store steps on
moto's DynamoDB (the template's KvTable), the API shows it completed and verifies it by replay.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from artifact_support import Artifact
from psycopg.types.json import Jsonb

RUN = "wf_0123456789abcdef0123456789abcdef"  # the placeholder run id of events/workflow_*.json


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@pytest.fixture(scope="module")
def run_id(cloud: Artifact) -> str:
    """POST /workflows through the built WorkflowApiFunction; its message taken off WorkflowQueue."""
    response = cloud.invoke("WorkflowApiFunction", cloud.event("workflow_api_submit.json"))
    assert response["statusCode"] == 202, response
    accepted = body(response)
    [message] = cloud.take("WorkflowQueue")
    assert message == {"workflow_run_id": accepted["workflow_run_id"], "tenant_id": cloud.tenant, "segment": 0,
                       "correlation_id": accepted["workflow_run_id"], "relayed_at": 0}
    return str(accepted["workflow_run_id"])


@pytest.mark.invokes("WorkflowApiFunction")
def test_workflow_api_stores_the_run_and_queues_it(cloud: Artifact, run_id: str) -> None:
    [row] = cloud.rows("SELECT tenant_id, status, name FROM m11_audit.workflow_runs WHERE id = %(id)s", id=run_id)
    assert row == {"tenant_id": cloud.tenant, "status": "queued", "name": "remember and recall"}


@pytest.mark.invokes("WorkflowRunnerFunction", "WorkflowApiFunction")
def test_workflow_runner_runs_every_op_and_the_api_shows_and_verifies_the_run(cloud: Artifact, run_id: str) -> None:
    event = cloud.event("workflow_runner_message.json", {RUN: run_id})

    answer = cloud.invoke("WorkflowRunnerFunction", event)
    again = cloud.invoke("WorkflowRunnerFunction", event)  # SQS delivers at least once

    assert answer == again == {"batchItemFailures": []}
    shown = cloud.invoke("WorkflowApiFunction", cloud.event("workflow_api_get.json", {RUN: run_id}))
    assert shown["statusCode"] == 200, shown
    run = body(shown)
    assert run["status"] == "completed"
    assert [(op["op_index"], op["op_type"], op["status"]) for op in run["ops"]] == [
        (0, "kv_store", "completed"), (1, "kv_store", "completed"), (2, "kv_store", "completed")]
    assert run["ops"][1]["result"]["value"] == {"text": "hello"}
    assert run["ops"][2]["args"]["value"] == "hello"  # the reference, resolved from op 1's recorded result
    replayed = cloud.invoke("WorkflowApiFunction", cloud.event("workflow_api_replay.json", {RUN: run_id}))
    assert replayed["statusCode"] == 200, replayed
    report = body(replayed)
    assert (report["status"], report["ops_verified"], report["ops_skipped"]) == ("verified", 2, 1)


@pytest.mark.invokes("AuditRetentionFunction")
def test_audit_retention_deletes_the_audit_past_the_retention_age(cloud: Artifact) -> None:
    old = f"wf_{uuid.uuid4().hex}"
    cloud.admin.execute(
        "INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, status, created_at, updated_at, completed_at)"
        " VALUES (%(id)s, %(t)s, %(d)s, 'completed', now() - interval '400 days', now() - interval '400 days',"
        " now() - interval '400 days')",
        {"id": old, "t": cloud.tenant, "d": Jsonb({"steps": []})})
    cloud.admin.execute(
        "INSERT INTO m11_audit.ops (op_id, workflow_run_id, op_index, op_type, args, args_hash, tenant_id, created_at)"
        " VALUES (%(op)s, %(id)s, 0, 'kv_store', %(a)s, 'h', %(t)s, now() - interval '400 days')",
        {"op": f"{old}.0", "id": old, "a": Jsonb({}), "t": cloud.tenant})

    answer = cloud.invoke("AuditRetentionFunction", cloud.event("audit_retention_nightly.json"))

    assert answer["ops_deleted"] >= 1 and answer["runs_deleted"] >= 1 and answer["complete"] is True
    assert cloud.rows("SELECT id FROM m11_audit.workflow_runs WHERE id = %(id)s", id=old) == []


@pytest.mark.invokes("WorkflowRelayFunction")
def test_workflow_relay_sends_a_lost_runs_message_again_and_fails_one_never_started(cloud: Artifact) -> None:
    lost, given_up = f"wf_{uuid.uuid4().hex}", f"wf_{uuid.uuid4().hex}"
    for run_id, requeues in ((lost, 0), (given_up, 3)):
        cloud.admin.execute(
            "INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, requeues, created_at, updated_at)"
            " VALUES (%(id)s, %(t)s, %(d)s, %(r)s, now() - interval '7 hours', now() - interval '1 hour')",
            {"id": run_id, "t": cloud.tenant, "d": Jsonb({"steps": []}), "r": requeues})
    cloud.take("WorkflowQueue")  # whatever earlier tests left there

    answer = cloud.invoke("WorkflowRelayFunction", cloud.event("workflow_relay_schedule.json"))

    assert answer["requeued"] >= 1 and answer["never_started"] >= 1 and answer["not_sent"] == 0
    sent = cloud.take("WorkflowQueue")
    [relayed] = [m for m in sent if m["workflow_run_id"] == lost]
    assert relayed["tenant_id"] == cloud.tenant and relayed["segment"] == 0 and relayed["relayed_at"] > 0
    assert given_up not in {m["workflow_run_id"] for m in sent}
    states = {row["id"]: (row["status"], row["requeues"], row["error_code"]) for row in cloud.rows(
        "SELECT id, status, requeues, error_code FROM m11_audit.workflow_runs WHERE id IN (%(a)s, %(b)s)",
        a=lost, b=given_up)}
    assert states == {lost: ("queued", 1, None), given_up: ("failed", 3, "never_started")}
