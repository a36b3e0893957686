"""The loop announces through the skills: a new human checkpoint goes to Slack and a signed webhook (a run each), a
policy that becomes active to a signed webhook, each once, to the targets the tenant configured, and nothing without
them.

The real functions run from functions/ (LocalApp, wired by template.yaml) on PostgreSQL as the function role and
moto's server; the fake Slack and webhook receivers on 127.0.0.1 count what reached them, and the webhook
receiver verifies every signature with the `standardwebhooks` library.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.rows import dict_row
from test_pattern_merges import NAMES, settle, sibling

from incident_loop_dev.fakes.aws import put_parameter
from incident_loop_dev.workflow import LocalWorkflows, local_workflows

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = json.loads(json.loads((ROOT / "events" / "ingest_api_timeout_1.json").read_text())["body"])


@pytest.fixture
def local(admin_db_url: str) -> Iterator[LocalWorkflows]:
    with local_workflows(ROOT, admin_db_url, f"tenant-ann-{uuid.uuid4().hex[:8]}") as workflows:
        yield workflows


@pytest.fixture
def admin(admin_db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(admin_db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _secret_parameter(local: LocalWorkflows, tenant: str) -> str:
    """The receiver's signing secret, stored as one of the tenant's own parameters."""
    assert local.fakes is not None
    ssm = boto3.client("ssm", endpoint_url=local.app.endpoint_url)
    return put_parameter(ssm, f"/incident-loop/local/tenants/{tenant}/webhook-secret", local.fakes.webhook_secret)


def _targets(local: LocalWorkflows, tenant: str, *, slack: bool = True) -> dict[str, Any]:
    assert local.fakes is not None
    targets: dict[str, Any] = {"webhook": {"url": local.fakes.webhook.url + "/hooks/loop",
                                           "secret_parameter": _secret_parameter(local, tenant)}}
    if slack:
        targets["slack"] = {"channel": "#agent-oncall"}
    return targets


def _configure(local: LocalWorkflows, tenant: str, event: str, targets: dict[str, Any]) -> None:
    status, body = local.app.request("PUT", f"/notifications/{event}", tenant, targets)
    assert status == 200, body


def _incident(local: LocalWorkflows, tenant: str, n: int = 0) -> str:
    status, body = local.app.request("POST", "/incidents", tenant, {**INCIDENT, "run_id": f"run-ann-{n}"})
    assert status in (200, 201, 202), body
    return str(body["incident_id"])


def _approved_incident(local: LocalWorkflows, tenant: str) -> None:
    """An incident whose recovery a person approved, the loop run through: its pattern has a shadow policy."""
    incident_id = _incident(local, tenant)
    local.app.drain()
    _, loop = local.app.request("GET", f"/loops/{incident_id}", tenant)
    status, _ = local.app.request("POST", f"/checkpoints/{loop['pending_checkpoints'][0]}/resolve", tenant,
                                  {"resolution": "approve", "resolved_by": "oncall@example.com"})
    assert status == 200
    local.app.drain()


def _payloads(local: LocalWorkflows) -> list[dict[str, Any]]:
    assert local.fakes is not None
    return list(local.fakes.webhook.effects.values())


def _runs(admin: psycopg.Connection[dict[str, Any]], tenant: str) -> list[dict[str, Any]]:
    return admin.execute("SELECT id, name, status FROM m11_audit.workflow_runs WHERE tenant_id = %s ORDER BY name",
                         (tenant,)).fetchall()


def test_a_new_checkpoint_is_announced_once_to_slack_and_a_signed_webhook_however_often_delivered(
    local: LocalWorkflows, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    _configure(local, tenant, "checkpoint_created", _targets(local, tenant))
    incident_id = _incident(local, tenant)
    local.app.drain(duplicate=True)  # every message of every queue, the workflow queue's too, delivered twice

    status, loop = local.app.request("GET", f"/loops/{incident_id}", tenant)
    assert status == 200 and loop["is_blocked"] and len(loop["pending_checkpoints"]) == 1
    checkpoint_id = loop["pending_checkpoints"][0]
    counts = fakes.counts()
    assert (counts["slack_messages"], counts["webhook_effects"], counts["webhook_rejected"]) == (1, 1, 0)
    [message] = fakes.slack.messages
    assert message.channel == "#agent-oncall" and checkpoint_id in (message.text or "")
    [payload] = _payloads(local)
    assert payload["type"] == "checkpoint.created" and payload["data"]["id"] == checkpoint_id
    assert payload["data"]["incident_id"] == incident_id
    runs = _runs(admin, tenant)  # a run per target
    assert [(run["name"], run["status"]) for run in runs] == [
        (f"checkpoint_created {checkpoint_id} slack", "completed"),
        (f"checkpoint_created {checkpoint_id} webhook", "completed")]


def test_an_announcement_is_an_audited_run_that_replays_with_no_live_call(local: LocalWorkflows) -> None:
    tenant = local.tenant
    _configure(local, tenant, "checkpoint_created", _targets(local, tenant))
    _incident(local, tenant)
    local.app.drain()
    status, runs = local.app.request("GET", "/notifications", tenant)
    assert status == 200 and [n["event"] for n in runs["notifications"]] == ["checkpoint_created"]
    with psycopg.connect(local.app.database_url, row_factory=dict_row) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        runs = conn.execute("SELECT id FROM m11_audit.workflow_runs WHERE tenant_id = %s", (tenant,)).fetchall()
    assert len(runs) == 2  # Slack's and the webhook's
    for run in runs:
        report = local.replay(run["id"])
        assert report["status"] == "verified" and report["live_calls"] == 0
        assert report["ops_verified"] + report["ops_skipped"] == 1


def test_a_policy_that_becomes_active_is_announced_once_by_signed_webhook(local: LocalWorkflows) -> None:
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    _configure(local, tenant, "policy_activated", _targets(local, tenant, slack=False))
    _approved_incident(local, tenant)
    assert fakes.counts()["webhook_effects"] == 0  # no checkpoint targets, and the policy is only in shadow
    _, policies = local.app.request("GET", "/policies", tenant)
    [policy] = policies["policies"]
    for _ in range(3):  # the first confirmation activates it; more do not announce it again
        status, answer = local.app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant,
                                           {"by": "oncall@example.com"})
        assert status == 200, answer
    local.app.drain(duplicate=True)
    counts = fakes.counts()
    assert (counts["webhook_effects"], counts["webhook_rejected"], counts["slack_messages"]) == (1, 0, 0)
    [payload] = _payloads(local)
    assert payload["type"] == "policy.activated" and payload["data"]["policy_id"] == policy["policy_id"]


def test_a_slack_target_that_fails_does_not_hold_back_the_signed_webhook(
    local: LocalWorkflows, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    """Slack answers channel_not_found (a channel archived after it was configured): the Slack run fails, and the
    webhook is delivered all the same. Before, one run held both steps, Slack first, and the webhook never went."""
    from incident_loop_dev.fakes.slack import MISSING_CHANNEL

    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    ssm = boto3.client("ssm", endpoint_url=local.app.endpoint_url)
    put_parameter(ssm, f"/incident-loop/local/slack-grants/{tenant}", f"#agent-oncall {MISSING_CHANNEL}")
    targets = {**_targets(local, tenant), "slack": {"channel": MISSING_CHANNEL}}
    _configure(local, tenant, "checkpoint_created", targets)
    incident_id = _incident(local, tenant)
    local.app.drain()
    counts = fakes.counts()
    assert (counts["slack_messages"], counts["webhook_effects"]) == (0, 1)
    [payload] = _payloads(local)
    assert payload["type"] == "checkpoint.created" and payload["data"]["incident_id"] == incident_id
    assert sorted((run["name"].rsplit(" ", 1)[1], run["status"]) for run in _runs(admin, tenant)) == [
        ("slack", "failed"), ("webhook", "completed")]


def test_a_tenant_without_targets_announces_nothing(
    local: LocalWorkflows, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    other = f"tenant-quiet-{uuid.uuid4().hex[:6]}"
    _configure(local, local.tenant, "checkpoint_created", _targets(local, local.tenant))  # someone else's
    _incident(local, other)
    local.app.drain()
    assert local.fakes is not None and local.fakes.counts()["slack_messages"] == 0
    assert local.fakes.counts()["webhook_deliveries"] == 0
    assert _runs(admin, other) == []


@pytest.mark.parametrize(("targets", "reason"), [
    ({}, "give a slack or a webhook target"),
    ({"slack": {"channel": "#a", "webhook_parameter": "/p/tenants/x/hook"}}, "exactly one of channel"),
    ({"webhook": {"url": "ftp://example.com/x", "secret_parameter": "/p/s"}}, "url"),
    ({"webhook": {"url": "https://example.com/x", "secret_parameter": "/incident-loop/local/tenants/someone-else/s"}},
     "the tenant's own secrets"),
    ({"webhook": {"url": "https://10.0.0.8/x", "secret_parameter": "/incident-loop/local/tenants/{tenant}/s"}},
     "webhook_send"),
    # Another stage's: the functions may not read it (IAM); before, accepted, then every announcement retried.
    ({"webhook": {"url": "https://example.com/x", "secret_parameter": "/incident-loop/prod/tenants/{tenant}/s"}},
     "the tenant's own secrets"),
    # A channel not granted to the tenant for the deployment's bot: before, accepted, then every announcement's
    # Slack step failed.
    ({"slack": {"channel": "#someone-elses-oncall"}}, "is not granted to tenant"),
])
def test_bad_targets_are_refused_with_a_reason_and_nothing_is_stored(
    local: LocalWorkflows, targets: dict[str, Any], reason: str
) -> None:
    body = json.loads(json.dumps(targets).replace("{tenant}", local.tenant))
    status, answer = local.app.request("PUT", "/notifications/checkpoint_created", local.tenant, body)
    assert status == 422, answer
    assert reason in json.dumps(answer)
    _, settings = local.app.request("GET", "/notifications", local.tenant)
    assert settings == {"notifications": []}


@pytest.mark.parametrize("reference", [
    "/incident-loop/local/tenants/{tenant}/hook-secret",
    "secretsmanager:incident-loop/local/tenants/{tenant}/hook-secret",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:incident-loop/local/tenants/{tenant}/hook-secret",
])
def test_every_documented_form_of_a_tenants_own_secret_is_accepted(local: LocalWorkflows, reference: str) -> None:
    """docs/workflows.md: an SSM parameter, or a Secrets Manager secret written secretsmanager:... or as its ARN."""
    secret = reference.replace("{tenant}", local.tenant)
    status, answer = local.app.request("PUT", "/notifications/policy_activated", local.tenant,
                                       {"webhook": {"url": "https://hooks.example.com/in", "secret_parameter": secret}})
    assert status == 200, answer
    assert answer["notifications"][0]["targets"]["webhook"]["secret_parameter"] == secret


def test_targets_are_removed_and_an_unknown_event_is_refused(local: LocalWorkflows) -> None:
    tenant = local.tenant
    _configure(local, tenant, "checkpoint_created", _targets(local, tenant))
    assert local.app.request("DELETE", "/notifications/checkpoint_created", tenant)[0] == 204
    assert local.app.request("DELETE", "/notifications/checkpoint_created", tenant)[0] == 404
    assert local.app.request("PUT", "/notifications/every_minute", tenant, _targets(local, tenant))[0] == 422
    assert local.app.request("GET", "/notifications", tenant)[1] == {"notifications": []}


class _Queue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: Any) -> None:
        self.sent.append(message.workflow_run_id)


def test_a_run_is_queued_only_when_the_outermost_transaction_commits_and_never_after_a_rollback(
    conn: psycopg.Connection[Any]
) -> None:
    from incident_loop.stores.notifications import PostgresNotifications
    from incident_loop.stores.unit_of_work import PostgresUnitOfWork

    tenant, queue = f"tenant-ob-{uuid.uuid4().hex[:6]}", _Queue()
    uow = PostgresUnitOfWork(queues=None, conn=conn)  # type: ignore[arg-type]
    uow.notifications = PostgresNotifications(conn, uow.read_ahead, queue=queue)
    steps = {"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "k"}}]}
    with uow.begin(tenant):
        with uow.begin(tenant):  # a savepoint: not committed yet
            uow.notifications.submit("wf_outer", tenant, "n", steps)
        assert queue.sent == []
    assert queue.sent == ["wf_outer"]
    with pytest.raises(RuntimeError), uow.begin(tenant):
        uow.notifications.submit("wf_rolled_back", tenant, "n", steps)
        raise RuntimeError("the stage failed")
    with uow.begin(tenant):
        pass
    assert queue.sent == ["wf_outer"]
    with uow.begin(tenant):
        stored = conn.execute("SELECT id FROM m11_audit.workflow_runs WHERE tenant_id = %s", (tenant,)).fetchall()
    assert [row["id"] for row in stored] == ["wf_outer"]


def test_an_active_policy_demoted_by_regrets_is_announced_once(local: LocalWorkflows) -> None:
    """Its activation was announced; before, nobody was told when it stopped acting."""
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    _configure(local, tenant, "policy_demoted", _targets(local, tenant, slack=False))
    _approved_incident(local, tenant)
    _, policies = local.app.request("GET", "/policies", tenant)
    [policy] = policies["policies"]
    local.app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "oncall@example.com"})
    answers = [local.app.request("POST", f"/policies/{policy['policy_id']}/regret", tenant,
                                 {"by": "dev@example.com", "reason": "blocked a good run"})[1] for _ in range(4)]
    assert [a["demoted"] for a in answers] == [False, False, True, False]
    local.app.drain(duplicate=True)
    [payload] = _payloads(local)
    assert payload["type"] == "policy.demoted" and payload["data"]["policy_id"] == policy["policy_id"]
    assert payload["data"]["mode"] == "shadow" and payload["data"]["by"] == "dev@example.com"
    assert "3 regrets" in payload["data"]["reason"]


def test_an_active_policy_a_pattern_merge_puts_back_in_shadow_is_announced(local: LocalWorkflows) -> None:
    """A merge demotes the survivor's active policy (test_pattern_merges.py) without a person: the tenant is told."""
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    _configure(local, tenant, "policy_demoted", _targets(local, tenant, slack=False))
    survivor = settle(local.app, tenant, "alpha", approve=True)
    _, policies = local.app.request("GET", "/policies", tenant)
    [policy] = policies["policies"]
    local.app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "oncall@example.com"})
    for name in NAMES[1:]:
        settle(local.app, tenant, name)
    assert _payloads(local) == []
    sibling(local.app, tenant, "hotel", "hotel-1")  # the merge
    local.app.drain()
    [payload] = _payloads(local)
    assert payload["type"] == "policy.demoted" and payload["data"]["policy_id"] == policy["policy_id"]
    assert payload["data"]["source_pattern_id"] == survivor and "absorbed sibling patterns" in payload["data"]["reason"]


def test_a_slack_channel_whose_grants_cannot_be_read_now_is_a_503_to_retry_and_nothing_is_stored(
        local: LocalWorkflows, monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_loop.skills import secrets
    from incident_loop.skills.errors import SkillError

    def unreachable(name: str) -> str:
        raise SkillError(f"secret {name!r} could not be read: GetParameterError", code="secret_unavailable",
                         retryable=True)

    monkeypatch.setattr(secrets, "fetch", unreachable)
    status, answer = local.app.request("PUT", "/notifications/checkpoint_created", local.tenant,
                                       {"slack": {"channel": "#agent-oncall"}})
    assert (status, answer["message"]) == (503, "the targets could not be checked now, retry later")
    assert local.app.request("GET", "/notifications", local.tenant)[1] == {"notifications": []}
