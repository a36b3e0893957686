"""webhook_send and slack_send as deployed: the registry's skills with their default wiring (urllib3, moto's
server over HTTP for DynamoDB, SSM and Secrets Manager) against the fake receivers on 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from incident_loop.skills import registry, secrets
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import EndpointDisabled, ExternalError, TargetNotAllowed
from incident_loop.skills.signing import new_secret
from incident_loop_dev.fakes import FakeSlack, FakeWebhookReceiver
from incident_loop_dev.fakes.aws import put_parameter, reset_skill_caches, skill_tables_env
from incident_loop_dev.local.services import moto_server

OLD, NEW = new_secret(), new_secret()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The package pointed at moto's server and fresh tables; the receivers' hosts allow-listed."""
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    names = skill_tables_env(dynamodb, uuid.uuid4().hex[:8])
    values = {**names, "AWS_ENDPOINT_URL": endpoint, "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
              "WEBHOOK_RETRY_SCALE": "0.001", "SKILL_READ_TIMEOUT_S": "0.5", "SKILL_MAX_WAIT_S": "5"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_skill_caches()
    yield {"ssm": ssm, "dynamodb": dynamodb, "endpoint": endpoint, **names}
    reset_skill_caches()


def send(url: str, payload: Any, key: str, **extra: Any) -> dict[str, Any]:
    args = {"url": url, "payload": payload, **extra}
    return registry.get("webhook_send").execute(args, SkillContext("tenant-a", idempotency_key=key))


def test_rotated_secrets_verify_at_a_real_receiver_through_the_switch(env: dict[str, Any]) -> None:
    parameter = put_parameter(env["ssm"], f"/incident-loop/test/tenants/tenant-a/hook-{uuid.uuid4().hex[:6]}", OLD)
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        send(f"{receiver.url}/in", {"phase": "old"}, "p0", secret_parameter=parameter)
        put_parameter(env["ssm"], parameter, f"{NEW} {OLD}")  # 1. add the new secret: both are sent
        secrets.reset()  # (a container picks the change up within secrets.MAX_AGE_S)
        send(f"{receiver.url}/in", {"phase": "both"}, "p1", secret_parameter=parameter)
        receiver.rotate([NEW])  # 2. the receiver switches to the new secret
        send(f"{receiver.url}/in", {"phase": "both"}, "p2", secret_parameter=parameter)
        put_parameter(env["ssm"], parameter, NEW)  # 3. drop the old secret
        secrets.reset()
        send(f"{receiver.url}/in", {"phase": "new"}, "p3", secret_parameter=parameter)
        receiver.rotate([OLD])  # a receiver that never switched now refuses
        with pytest.raises(ExternalError) as refused:
            send(f"{receiver.url}/in", {"phase": "late"}, "p4", secret_parameter=parameter)
    assert receiver.verifying and len(receiver.deliveries) == 4 and len(receiver.rejected) == 1
    assert [c.json()["phase"] for c in receiver.deliveries] == ["old", "both", "both", "new"]
    assert refused.value.code == "http_401" and not refused.value.retryable


def test_a_message_sent_three_times_is_one_effect_at_the_receiver(env: dict[str, Any]) -> None:
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        outs = [send(receiver.url, {"n": 1}, "op-7", secrets=[OLD]) for _ in range(3)]
    assert len(receiver.calls) == 1 and len(receiver.effects) == 1
    assert outs[0] == outs[1] == outs[2] and outs[0]["webhook_id"] in receiver.effects


def test_a_lost_answer_is_retried_with_the_same_id_and_applied_once(env: dict[str, Any]) -> None:
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        receiver.stall(1.0)  # applies the first delivery after the sender's 0.5 s read timeout
        out = send(receiver.url, {"n": 2}, "op-8", secrets=[OLD])
        time.sleep(0.7)  # let the stalled request finish at the receiver
    ids = {c.headers["webhook-id"] for c in receiver.calls}
    assert out["attempts"] == 2 and len(receiver.calls) == 2 and ids == {out["webhook_id"]}
    assert len(receiver.deliveries) == 2 and len(receiver.effects) == 1  # deduplicated by webhook-id


def test_server_errors_are_retried_on_the_scaled_schedule(env: dict[str, Any]) -> None:
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        receiver.fail(500, times=2)
        out = send(receiver.url, {"n": 3}, "op-9", secrets=[OLD])
    assert out["attempts"] == 3 and len(receiver.effects) == 1
    gap = receiver.calls[2].at - receiver.calls[1].at
    assert 0.25 <= gap <= 1.5  # the spec's 5 minutes, scaled by 0.001 and jittered


def test_a_410_disables_the_endpoint_and_later_sends_are_refused(env: dict[str, Any]) -> None:
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        receiver.fail(410)
        with pytest.raises(EndpointDisabled):
            send(receiver.url, {"n": 1}, "gone-1", secrets=[OLD])
        with pytest.raises(EndpointDisabled):
            send(receiver.url, {"n": 2}, "gone-2", secrets=[OLD])
    assert len(receiver.calls) == 1


def test_without_the_allow_list_a_loopback_receiver_is_refused(env: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_HOSTS", "")
    reset_skill_caches()
    with FakeWebhookReceiver(secrets=[OLD]) as receiver:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            with pytest.raises(TargetNotAllowed):
                send(url, {"n": 1}, f"ssrf-{url}", secrets=[OLD])
    assert receiver.calls == []


def test_slack_messages_to_one_channel_arrive_a_second_apart(env: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=env["endpoint"], region_name="us-east-1")
    with FakeSlack() as slack:
        arn = sm.create_secret(Name=f"slack-{uuid.uuid4().hex[:6]}", SecretString=slack.token)["ARN"]
        monkeypatch.setenv("SLACK_BASE_URL", slack.base_url)
        monkeypatch.setenv("SLACK_TOKEN_PARAMETER", arn)
        reset_skill_caches()
        skill = registry.get("slack_send")
        outs = [skill.execute({"channel": "C1", "text": f"m{i}"}, SkillContext("tenant-a")) for i in range(3)]
        skill.execute({"channel": "C2", "text": "other"}, SkillContext("tenant-a"))
    assert [m.text for m in slack.messages] == ["m0", "m1", "m2", "other"] and all(o["ts"] for o in outs)
    times = [m.at for m in slack.messages]
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95
    assert times[3] - times[2] < 0.5  # C2 was not held behind C1


def test_a_slack_429_waits_its_retry_after_then_delivers_once(env: dict[str, Any]) -> None:
    with FakeSlack() as slack:
        slack.fail(429, retry_after="1", body=b'{"ok": false, "error": "ratelimited"}')
        started = time.monotonic()
        out = registry.get("slack_send").execute({"webhook_url": slack.webhook_url, "text": "hi"},
                                                 SkillContext("tenant-a", idempotency_key="slack-1"))
        elapsed = time.monotonic() - started
    assert out["via"] == "webhook" and len(slack.calls) == 2 and len(slack.messages) == 1
    assert slack.calls[1].at - slack.calls[0].at >= 0.95 and elapsed >= 0.95
