"""Workflows through the real functions: PostgreSQL (as the function role), moto's server over HTTP, and the fake
Slack, Voyage and webhook receivers on 127.0.0.1 counting what reached them.

The functions run in this process from functions/ (LocalApp), wired by template.yaml; the queue is delivered
by hand where a test needs to control delivery (three times, a crash in between).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from incident_loop.stores.audit import PostgresAudit
from incident_loop_dev.local.runner import sqs_record
from incident_loop_dev.workflow import LocalWorkflows, local_workflows

ROOT = Path(__file__).resolve().parents[2]
FIVE_STEPS = json.loads((ROOT / "events" / "workflows" / "five_step.json").read_text())
RUNNER = "WorkflowRunnerFunction"


@pytest.fixture(scope="module")
def workflows(admin_db_url: str) -> Iterator[LocalWorkflows]:
    with local_workflows(ROOT, admin_db_url, f"tenant-wf-{uuid.uuid4().hex[:8]}") as local:
        yield local


@pytest.fixture
def admin(admin_db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(admin_db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _fresh() -> tuple[dict[str, Any], str]:
    """The seed's five steps on a key and a text of their own (the kv value and the embedding cache are per text)."""
    definition, key = json.loads(json.dumps(FIVE_STEPS)), f"last-{uuid.uuid4().hex[:8]}"
    definition["steps"][0]["args"]["key"] = definition["steps"][1]["args"]["key"] = key
    definition["steps"][0]["args"]["value"]["summary"] += f" ({key})"
    return definition, key


def _counts(workflows: LocalWorkflows) -> dict[str, int]:
    return dict(workflows.fakes.counts())


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def _wipe_runner_idempotency(workflows: LocalWorkflows) -> int:
    """Delete the runner's Powertools records (as if they expired); the skills' records stay."""
    app, table = workflows.app, workflows.app.table_names["IdempotencyTable"]
    items = app.dynamodb.scan(TableName=table, ProjectionExpression="id")["Items"]
    mine = [item for item in items if "workflow_segment" in item["id"]["S"]]
    for item in mine:
        app.dynamodb.delete_item(TableName=table, Key={"id": item["id"]})
    return len(mine)


def _deliver_each(workflows: LocalWorkflows, times: int) -> tuple[list[Any], int]:
    """Every message of the workflow queue (continuations included) delivered `times` times, then deleted.

    Before the last delivery of each, the runner's idempotency records are wiped, so that delivery runs the
    runner itself (the audit and the skills' keys must hold on their own). Returns (answers, records wiped).
    """
    app = workflows.app
    url, arn = app.queue_urls["WorkflowQueue"], app.queue_arns["WorkflowQueue"]
    answers: list[Any] = []
    wiped = 0
    while True:
        found = app.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"],
                                        WaitTimeSeconds=0).get("Messages", [])
        if not found:
            return answers, wiped
        event = {"Records": [sqs_record(found[0], arn)]}
        for delivery in range(times):
            if delivery == times - 1:
                wiped += _wipe_runner_idempotency(workflows)
            answers.append(app.invoke(RUNNER, event))
        app.sqs.delete_message(QueueUrl=url, ReceiptHandle=found[0]["ReceiptHandle"])


def _run(workflows: LocalWorkflows, definition: dict[str, Any] | None = None) -> dict[str, Any]:
    return workflows.run(definition or _fresh()[0])


def test_a_workflow_message_delivered_three_times_makes_each_external_effect_once(
        workflows: LocalWorkflows, admin: Any) -> None:
    before, (definition, key) = _counts(workflows), _fresh()
    run_id = workflows.submit(definition)

    answers, wiped = _deliver_each(workflows, times=3)

    assert answers and all(answer == {"batchItemFailures": []} for answer in answers)
    assert len(answers) % 3 == 0 and wiped >= len(answers) // 3  # each message's last delivery ran the runner
    got = _delta(before, _counts(workflows))
    assert (got["slack_messages"], got["voyage_requests"], got["webhook_effects"]) == (1, 1, 1)
    assert got["webhook_deliveries"] == 1 and got["webhook_rejected"] == 0
    ops = admin.execute("SELECT op_index, status FROM m11_audit.ops WHERE workflow_run_id = %(id)s ORDER BY op_index",
                        {"id": run_id}).fetchall()
    assert [(op["op_index"], op["status"]) for op in ops] == [(i, "completed") for i in range(5)]
    kv = workflows.app.dynamodb.get_item(TableName=workflows.app.table_names["KvTable"],
                                         Key={"pk": {"S": f"{workflows.tenant}#incidents#{key}"}})["Item"]
    assert kv["version"]["N"] == "1"  # the kv set was written once


def test_a_crash_mid_run_resumes_after_the_last_completed_op_without_repeating_an_effect(
        workflows: LocalWorkflows, admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _counts(workflows)
    real = PostgresAudit.complete_op

    def crash_after_the_webhook(self: PostgresAudit, tenant_id: str, run_id: str, op_index: int, *a: Any) -> Any:
        if op_index == 3:
            raise RuntimeError("the container died after the webhook was delivered")
        return real(self, tenant_id, run_id, op_index, *a)

    monkeypatch.setattr(PostgresAudit, "complete_op", crash_after_the_webhook)
    run_id = workflows.submit(_fresh()[0])
    for _ in range(20):
        answer = workflows.app.deliver("WorkflowQueue")
        if isinstance(answer, Exception):  # the batch's one record failed: the invocation fails, as in Lambda
            break
    else:
        pytest.fail("the crash never happened")
    statuses = admin.execute("SELECT status FROM m11_audit.ops WHERE workflow_run_id = %(id)s ORDER BY op_index",
                             {"id": run_id}).fetchall()
    assert [row["status"] for row in statuses] == ["completed", "completed", "completed", "pending"]
    assert _delta(before, _counts(workflows))["webhook_deliveries"] == 1
    monkeypatch.setattr(PostgresAudit, "complete_op", real)

    workflows.app.drain()  # the failed record comes back and resumes

    status, run = workflows.app.request("GET", f"/workflows/{run_id}", workflows.tenant)
    assert status == 200 and run["status"] == "completed"
    got = _delta(before, _counts(workflows))
    assert (got["webhook_deliveries"], got["webhook_effects"], got["voyage_requests"], got["slack_messages"]) == (
        1, 1, 1, 1)


def test_replay_of_a_completed_run_is_verified_with_zero_live_calls(workflows: LocalWorkflows, admin: Any) -> None:
    run = _run(workflows)
    assert run["status"] == "completed", run

    report = workflows.replay(run["workflow_run_id"])

    assert (report["status"], report["severity"], report["live_calls"]) == ("verified", "INFO", 0)
    assert report["outbound_requests"] == [] and not any(report["receiver_calls"].values())
    assert (report["ops_verified"], report["ops_failed"], report["ops_skipped"]) == (4, 0, 1)  # slack is transient
    [stored] = admin.execute("SELECT status, ops_verified, ops_skipped, tenant_id FROM m11_audit.replay_runs"
                             " WHERE replay_id = %(id)s", {"id": report["replay_id"]}).fetchall()
    assert stored == {"status": "verified", "ops_verified": 4, "ops_skipped": 1, "tenant_id": workflows.tenant}


def test_the_replay_counter_sees_a_live_call_when_one_is_made(workflows: LocalWorkflows) -> None:
    import urllib3

    from incident_loop_dev.workflow import OutboundCounter

    with OutboundCounter(workflows.local_endpoints) as counter:
        urllib3.PoolManager().request("POST", workflows.fakes.voyage.url + "/v1/embeddings", body=b"{}")

    assert len(counter.requests) == 1  # so the 0 above is a measurement, not a blind spot


def test_an_audit_record_changed_after_the_fact_fails_replay_at_that_op(workflows: LocalWorkflows, admin: Any) -> None:
    run = _run(workflows)
    admin.execute("UPDATE m11_audit.ops SET result = jsonb_set(result, '{value,incident}', '\"inc-forged\"')"
                  " WHERE workflow_run_id = %(id)s AND op_index = 1", {"id": run["workflow_run_id"]})

    report = workflows.replay(run["workflow_run_id"])

    assert (report["status"], report["severity"], report["first_mismatch_op_index"]) == ("mismatch", "CRITICAL", 1)
    assert report["text"].startswith("CRITICAL") and report["live_calls"] == 0
    assert report["mismatches"][0]["check"] == "result_hash"
    [stored] = admin.execute("SELECT status, first_mismatch_op_index, mismatch_diff FROM m11_audit.replay_runs"
                             " WHERE replay_id = %(id)s", {"id": report["replay_id"]}).fetchall()
    assert (stored["status"], stored["first_mismatch_op_index"]) == ("mismatch", 1)
    assert stored["mismatch_diff"]["checks"][0]["check"] == "result_hash"


def test_an_op_recorded_as_not_transient_is_checked_even_when_the_stored_definition_now_says_transient(
        workflows: LocalWorkflows, admin: Any) -> None:
    """Seed 004: the op's own `transient` says what replay skips. Marking the step transient in the stored
    definition after the fact (workflow_runs.definition) used to hide a rewritten result."""
    run = _run(workflows)
    run_id = run["workflow_run_id"]
    assert admin.execute("SELECT transient FROM m11_audit.ops WHERE workflow_run_id = %(r)s AND op_index = 1",
                         {"r": run_id}).fetchone() == {"transient": False}
    admin.execute("UPDATE m11_audit.ops SET result = jsonb_set(result, '{value,incident}', '\"inc-forged\"')"
                  " WHERE workflow_run_id = %(r)s AND op_index = 1", {"r": run_id})
    admin.execute("UPDATE m11_audit.workflow_runs SET definition = jsonb_set(definition, '{steps,1,transient}',"
                  " 'true') WHERE id = %(r)s", {"r": run_id})

    report = workflows.replay(run_id)

    assert (report["status"], report["first_mismatch_op_index"]) == ("mismatch", 1), report
    assert report["mismatches"][0]["check"] == "transient"
    assert report["mismatches"][0]["expected"] == {"transient": False}


def test_the_function_role_cannot_rewrite_a_completed_op(workflows: LocalWorkflows, db_url: str) -> None:
    run = _run(workflows)
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (workflows.tenant,))
        with pytest.raises(psycopg.errors.CheckViolation, match="not rewritten"):
            conn.execute("UPDATE m11_audit.ops SET result = '{}' WHERE workflow_run_id = %(id)s AND op_index = 0",
                         {"id": run["workflow_run_id"]})


def test_another_tenant_gets_404_on_every_workflow_route(workflows: LocalWorkflows) -> None:
    run = _run(workflows, {"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "nothing"}}]})
    run_id, other = run["workflow_run_id"], f"tenant-other-{uuid.uuid4().hex[:6]}"

    mine = workflows.app.request("GET", f"/workflows/{run_id}", workflows.tenant)
    theirs = [workflows.app.request("GET", f"/workflows/{run_id}", other),
              workflows.app.request("POST", f"/workflows/{run_id}/replay", other)]

    assert mine[0] == 200 and mine[1]["ops"][0]["result"]["found"] is False
    assert theirs == [(404, {"message": f"workflow run {run_id} not found"})] * 2


def test_a_submission_repeated_with_its_idempotency_key_makes_one_run_and_one_effect(
        workflows: LocalWorkflows, admin: Any) -> None:
    tenant, fakes = workflows.tenant, workflows.fakes
    assert fakes is not None
    definition = {"name": "once", "steps": [{"skill": "slack_send",
                                             "args": {"channel": "#agent-oncall", "text": "sent once"}}]}
    key = {"Idempotency-Key": f"client-{uuid.uuid4().hex}"}
    before = fakes.counts()["slack_messages"]

    first = workflows.app.request("POST", "/workflows", tenant, definition, headers=key)
    again = workflows.app.request("POST", "/workflows", tenant, definition, headers=key)  # a retry, before the run
    workflows.app.drain()
    later = workflows.app.request("POST", "/workflows", tenant, definition, headers=key)  # after it
    other_tenant_id = f"tenant-idem-{uuid.uuid4().hex[:6]}"
    other_tenant = workflows.app.request("POST", "/workflows", other_tenant_id, definition, headers=key)
    changed = workflows.app.request("POST", "/workflows", tenant, {**definition, "name": "another"}, headers=key)
    bad = workflows.app.request("POST", "/workflows", tenant, definition, headers={"Idempotency-Key": "has space"})
    workflows.app.drain()

    run_id = first[1]["workflow_run_id"]
    assert first[0] == again[0] == later[0] == 202
    assert again[1] == first[1] and first[1]["status"] == "queued"
    assert later[1] == {**first[1], "status": "completed"}
    assert other_tenant[0] == 202 and other_tenant[1]["workflow_run_id"] != run_id  # keys are per tenant
    assert changed == (409, {"message": "this Idempotency-Key was used with another workflow definition"})
    assert bad[0] == 422 and bad[1]["errors"][0]["field"] == "header.idempotency-key"
    # This tenant's run once; the other tenant's run is its own, refused: no channel is granted to that tenant.
    assert fakes.counts()["slack_messages"] - before == 1
    status, theirs = workflows.app.request("GET", f"/workflows/{other_tenant[1]['workflow_run_id']}", other_tenant_id)
    assert status == 200 and theirs["ops"][0]["error_code"] == "invalid_input"
    runs = admin.execute("SELECT count(*) AS n FROM m11_audit.workflow_runs WHERE tenant_id = %s AND name = 'once'",
                         (tenant,)).fetchone()
    assert runs == {"n": 1}


def test_replay_of_an_unfinished_run_is_a_409(workflows: LocalWorkflows) -> None:
    run_id = workflows.submit({"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "k"}}]})

    status, body = workflows.app.request("POST", f"/workflows/{run_id}/replay", workflows.tenant)

    assert status == 409 and "queued" in body["message"]
    workflows.app.drain()


@pytest.mark.parametrize(("steps", "field", "reason"), [
    ([{"skill": "teleport"}], "body.steps.0.skill", "unknown skill 'teleport'"),
    ([{"skill": "kv_store", "args": {"op": "explode", "key": "k"}}], "body.steps.0.args.op", "kv_store: Input should"),
    ([{"skill": "kv_store", "args": {"op": "get", "key": "${steps.1.result.key}"}},
      {"skill": "kv_store", "args": {"op": "get", "key": "k"}}], "body", "must point to an earlier step"),
    ([{"skill": "kv_store", "args": {"op": "get", "key": "k"}}] * 51, "body.steps", "at most 50"),
    # An inline webhook secret its signer refuses (it escaped validation as the skill's own error: a 500).
    ([{"skill": "webhook_send", "args": {"url": "https://hooks.example.com/in", "payload": {},
                                         "secrets": ["not-a-whsec-secret"]}}], "body.steps.0.args",
     "webhook_send: Value error, a webhook secret must start with 'whsec_'"),
    ([{"skill": "webhook_send", "args": {"url": "https://hooks.example.com/in", "payload": {},
                                         "secrets": ["whsec_" + "eHh4eHh4eHg="]}}], "body.steps.0.args",
     "a webhook secret must hold"),
])
def test_a_bad_definition_is_a_422_with_its_reason_and_stores_nothing(
        workflows: LocalWorkflows, admin: Any, steps: list[dict[str, Any]], field: str, reason: str) -> None:
    tenant = f"tenant-bad-{uuid.uuid4().hex[:6]}"

    status, body = workflows.app.request("POST", "/workflows", tenant, {"steps": steps})

    assert status == 422, body
    assert any(e["field"] == field and reason in e["reason"] for e in body["errors"]), body
    stored = admin.execute("SELECT count(*) AS n FROM m11_audit.workflow_runs WHERE tenant_id = %(t)s",
                           {"t": tenant}).fetchone()
    assert stored["n"] == 0


def test_a_body_that_is_not_json_is_a_400(workflows: LocalWorkflows) -> None:
    status, body = workflows.app.request("POST", "/workflows", workflows.tenant, '{"steps": [')
    assert status == 400 and body["message"] == "the body is not valid JSON"


def test_a_retryable_failure_is_retried_then_dead_lettered_and_a_redrive_resumes_the_run(
        workflows: LocalWorkflows, monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_loop.skills.kv_store import KvStoreSkill
    from incident_loop.skills.kvtable import KvUnavailable

    def unavailable(self: Any, data: Any, ctx: Any) -> Any:
        raise KvUnavailable("DynamoDB did not answer")

    monkeypatch.setattr(KvStoreSkill, "run", unavailable)
    app = workflows.app
    run_id = workflows.submit({"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "k"}}]})

    stats = app.drain()

    [dead] = app.dlq_messages("WorkflowQueue")
    assert json.loads(dead["Body"])["workflow_run_id"] == run_id and stats.failed == 10  # maxReceiveCount
    status, run = app.request("GET", f"/workflows/{run_id}", workflows.tenant)
    assert status == 200 and run["status"] == "running" and run["ops"][0]["status"] == "pending"
    assert run["ops"][0]["error_code"] == "store_unavailable"
    monkeypatch.undo()  # the store is back: redrive
    dlq = app.queue_urls["WorkflowQueueDLQ"]
    app.send("WorkflowQueue", dead["Body"])
    app.sqs.delete_message(QueueUrl=dlq, ReceiptHandle=dead["ReceiptHandle"])

    app.drain()

    status, run = app.request("GET", f"/workflows/{run_id}", workflows.tenant)
    assert status == 200 and run["status"] == "completed" and run["ops"][0]["status"] == "completed"


def test_a_run_whose_results_outgrow_a_lambda_answer_is_shown_with_the_rest_one_op_at_a_time(
        workflows: LocalWorkflows, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four voyage_embed steps of 200 texts at 1,024 dimensions record about 8 MB of results. Before, GET
    /workflows/{id} put all of them in one answer, which Lambda refuses over 6 MB: API Gateway answered 502 and the
    run could not be read at all."""
    assert workflows.fakes is not None
    monkeypatch.setattr(workflows.fakes.voyage, "dimensions", 1024)
    batch = uuid.uuid4().hex[:8]  # texts no earlier run cached
    steps = [{"skill": "voyage_embed", "args": {"texts": [f"{batch} step {s} text {n}" for n in range(200)]}}
             for s in range(4)]
    run_id = workflows.submit({"name": "large results", "steps": steps})
    workflows.app.drain()

    status, headers, run = workflows.app.respond("GET", f"/workflows/{run_id}", workflows.tenant)
    assert status == 200, run
    assert run["status"] == "completed" and [op["status"] for op in run["ops"]] == ["completed"] * 4
    shown = [op for op in run["ops"] if not op["omitted"]]
    assert 1 <= len(shown) < 4 and all(op["omitted"] for op in run["ops"][len(shown):])
    assert all(op["result"] is None and op["args"] is None for op in run["ops"][len(shown):])
    assert len(shown[0]["result"]["embeddings"]) == 200
    assert len(json.dumps(run)) < 6 * 1024 * 1024

    for op in run["ops"]:  # each op whole, on its own; the same result the run recorded (its hash)
        status, whole = workflows.app.request("GET", f"/workflows/{run_id}/ops/{op['op_index']}", workflows.tenant)
        assert status == 200, whole
        assert whole["omitted"] is False and len(whole["result"]["embeddings"]) == 200
        assert whole["result_hash"] == op["result_hash"] and whole["args"]["texts"][0].startswith(batch)
    verified = workflows.replay(run_id)
    assert verified["status"] == "verified"


@pytest.mark.parametrize(("path", "status"), [("ops/5", 404), ("ops/-1", 422), ("ops/x", 422),
                                              ("ops/99999999999", 422)])
def test_an_op_that_is_not_there_is_a_404_and_an_index_that_is_not_one_a_422(
        workflows: LocalWorkflows, path: str, status: int) -> None:
    run_id = _run(workflows)["workflow_run_id"]
    got, body = workflows.app.request("GET", f"/workflows/{run_id}/{path}", workflows.tenant)
    assert got == status, body
    assert workflows.app.request("GET", f"/workflows/{run_id}/ops/0", "someone-else")[0] == 404


def test_a_step_naming_another_stages_secret_fails_at_once_with_the_reason(workflows: LocalWorkflows) -> None:
    """The functions may read incident-loop/<Stage>/* only. Before, such a name passed, IAM denied it as a retryable
    error, and the run was retried for hours into the dead-letter queue."""
    assert workflows.fakes is not None
    secret = f"/incident-loop/prod/tenants/{workflows.tenant}/hook"
    before = len(workflows.app.dlq_messages("WorkflowQueue"))
    run = workflows.run({"steps": [{"skill": "webhook_send", "args": {
        "url": workflows.fakes.webhook.url, "secret_parameter": secret, "payload": {"type": "x"}}}]})
    assert (run["status"], run["ops"][0]["status"]) == ("failed", "failed"), run
    assert secret in run["ops"][0]["error_message"] and "incident-loop/<stage>" in run["ops"][0]["error_message"]
    assert len(workflows.app.dlq_messages("WorkflowQueue")) == before


def test_a_channel_not_granted_to_the_tenant_is_refused_and_nothing_reaches_slack(workflows: LocalWorkflows) -> None:
    """The deployment's bot posts for a tenant only to the channels granted to it (slack-grants); before, any
    channel the bot was in, another tenant's too."""
    assert workflows.fakes is not None
    before = len(workflows.fakes.slack.messages)
    run = workflows.run({"steps": [{"skill": "slack_send", "args": {"channel": "#tenant-b-oncall", "text": "hi"}}]})
    assert (run["status"], run["ops"][0]["error_code"]) == ("failed", "invalid_input"), run
    assert f"/incident-loop/local/slack-grants/{workflows.tenant}" in run["ops"][0]["error_message"]
    assert len(workflows.fakes.slack.messages) == before and run["dead_letters"] == 0
