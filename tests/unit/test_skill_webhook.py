"""webhook_send: Standard Webhooks signatures (checked only with the `standardwebhooks` library), key rotation,
stable ids, the spec's schedule, 410 and the SSRF guard. Scripted transport, moto in-process, a fake clock."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from incident_loop.settings import Settings
from incident_loop.skills import signing
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import (
    CircuitOpen,
    EndpointDisabled,
    ExternalError,
    SizeLimitExceeded,
    SkillInputError,
    TargetNotAllowed,
)
from incident_loop.skills.kvtable import KvTable, KvUnavailable
from incident_loop.skills.transport import HttpRequest
from incident_loop.skills.webhook_send import DELIVERIES, WebhookSendSkill, enable_endpoint, next_attempt_at
from incident_loop_dev.fakes.aws import IDEMPOTENCY_TABLE, KV_TABLE, skill_breakers
from incident_loop_dev.fakes.transport import FakeClock, ScriptedTransport, response

OLD, NEW, OTHER = (signing.PREFIX + base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2, 3))
URL = "https://hooks.example.com/in?token=abc"
PUBLIC = {"hooks.example.com": ["93.184.216.34"], "a.hooks.example.com": ["93.184.216.35"],
          "b.hooks.example.com": ["93.184.216.36"], "rebind.example.com": ["10.1.2.3"]}


def resolver(host: str, port: int) -> list[str]:
    if host in PUBLIC:
        return PUBLIC[host]
    from incident_loop.skills.ssrf import resolve

    return resolve(host, port)


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())  # receivers check the timestamp against the real time


def make(client: Any, clock: FakeClock, transport: ScriptedTransport, **settings: Any) -> WebhookSendSkill:
    config = Settings(**{"webhook_retry_scale": 1.0, "skill_max_wait_s": 20.0, **settings})
    return WebhookSendSkill(kv=KvTable(KV_TABLE, client, clock), transport=transport, resolver=resolver,
                            breaker_for=skill_breakers(client, clock=clock), clock=clock, sleep=clock.sleep,
                            settings=config, secret_source={HOOKS: f"{NEW} {OLD}"}.__getitem__,
                            persistence=DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=client))


HOOKS = "/incident-loop/test/tenants/tenant-a/hooks"


def ctx(key: str = "op-1") -> SkillContext:
    return SkillContext("tenant-a", idempotency_key=key)


def verify(secret: str, request: HttpRequest) -> Any:
    return Webhook(secret).verify(request.body or b"", request.headers)


def test_a_delivery_verifies_with_the_standardwebhooks_library(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    out = make(client, clock, transport).execute({"url": URL, "payload": {"type": "a.b", "n": 1},
                                                  "secrets": [OLD]}, ctx())
    request = transport.requests[0]
    assert verify(OLD, request) == {"type": "a.b", "n": 1}
    assert out == {"webhook_id": request.headers["webhook-id"], "status_code": 200, "attempts": 1, "delivered": True}
    assert request.headers["webhook-id"].startswith("msg_") and request.connect_ip == "93.184.216.34"
    assert request.headers["webhook-signature"].count("v1,") == 1
    with pytest.raises(WebhookVerificationError):
        verify(OTHER, request)


def test_two_active_secrets_send_two_signatures_each_verifying(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    make(client, clock, transport).execute({"url": URL, "payload": {"x": 1}, "secrets": [NEW, OLD]}, ctx())
    request = transport.requests[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(OLD, request) == verify(NEW, request) == {"x": 1}


def test_key_rotation_receivers_switch_while_both_are_sent(client: Any, clock: FakeClock) -> None:
    """Add the new secret, send both, receivers switch to it, drop the old one."""
    transport = ScriptedTransport()
    skill = make(client, clock, transport)
    for i, secrets in enumerate(([OLD], [NEW, OLD], [NEW])):
        skill.execute({"url": URL, "payload": {"phase": i}, "secrets": secrets}, ctx(f"rotation-{i}"))
    before, during, after = transport.requests
    assert verify(OLD, before) == {"phase": 0}
    assert verify(OLD, during) == verify(NEW, during) == {"phase": 1}  # old and switched receivers both accept
    assert verify(NEW, after) == {"phase": 2}
    with pytest.raises(WebhookVerificationError):
        verify(OLD, after)  # a receiver still on the old secret now fails: it had the whole overlap to switch


def test_secrets_from_a_parameter_are_all_used(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    make(client, clock, transport).execute({"url": URL, "payload": [1], "secret_parameter": HOOKS}, ctx())
    assert verify(NEW, transport.requests[0]) == verify(OLD, transport.requests[0]) == [1]


def test_the_webhook_id_is_stable_across_retries_and_calls_and_the_schedule_continues(client: Any,
                                                                                    clock: FakeClock) -> None:
    transport = ScriptedTransport(response(500), response(503))
    skill = make(client, clock, transport)
    args = {"url": URL, "payload": {"n": 1}, "secrets": [OLD]}
    with pytest.raises(ExternalError) as caught:
        skill.execute(args, ctx())
    # Attempt 1 at once, attempt 2 after the spec's 5 s; the 5-minute wait is handed back, not slept.
    assert clock.sleeps == [pytest.approx(5.0, rel=0.1)]
    assert caught.value.retryable and caught.value.retry_after_s == pytest.approx(300, rel=0.1)
    msg_id = transport.requests[0].headers["webhook-id"]
    assert next_attempt_at("tenant-a", msg_id, KvTable(KV_TABLE, client, clock)) == pytest.approx(
        clock.now + caught.value.retry_after_s, abs=0.01)
    clock.advance(caught.value.retry_after_s)
    out = skill.execute(args, ctx())  # the caller comes back: the third attempt succeeds
    assert out["attempts"] == 3 and out["webhook_id"] == msg_id
    assert {r.headers["webhook-id"] for r in transport.requests} == {msg_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in transport.requests]
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]  # a fresh timestamp (and signature) per attempt
    assert all(verify(OLD, r) == {"n": 1} for r in transport.requests)
    assert KvTable(KV_TABLE, client, clock).get("tenant-a", DELIVERIES, msg_id) is None  # state cleared


def test_a_delivered_message_is_not_sent_again_for_the_same_key(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    skill = make(client, clock, transport)
    first = skill.execute({"url": URL, "payload": {"n": 1}, "secrets": [OLD]}, ctx())
    assert skill.execute({"url": URL, "payload": {"n": 1}, "secrets": [OLD]}, ctx()) == first
    assert len(transport.requests) == 1


def test_a_delivered_message_whose_schedule_cannot_be_cleared_is_still_delivered_once(
        client: Any, clock: FakeClock) -> None:
    """After failed attempts, the delivery's bookkeeping is cleared once it is answered 2xx; a store that refuses
    that delete turned the delivered message into a retryable error, and the runner's retry sent it again."""

    class FlakyDeleteKv(KvTable):
        fail_deletes = 0

        def delete(self, tenant: str, namespace: str, key: str) -> bool:
            if self.fail_deletes:
                self.fail_deletes -= 1
                raise KvUnavailable("delete_item on incident-loop-kv: ProvisionedThroughputExceededException")
            return super().delete(tenant, namespace, key)

    transport = ScriptedTransport(response(503), response(503), response(200), default=response(200))
    kv = FlakyDeleteKv(KV_TABLE, client, clock)
    skill = WebhookSendSkill(kv=kv, transport=transport, resolver=resolver,
                             breaker_for=skill_breakers(client, clock=clock), clock=clock, sleep=clock.sleep,
                             settings=Settings(),
                             persistence=DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=client))
    args = {"url": URL, "payload": {"n": 1}, "secrets": [OLD]}
    with pytest.raises(ExternalError):  # the attempts in the call fail; the schedule's next is minutes away
        skill.execute(args, ctx())
    clock.advance(400)
    kv.fail_deletes = 1
    out = skill.execute(args, ctx())  # answered 200: delivered, whatever the store says after
    assert skill.execute(args, ctx()) == out and out["status_code"] == 200
    assert len(transport.requests) == 3 and kv.fail_deletes == 0  # 503, 503, then 200 once


def test_the_schedule_is_the_specs_scaled_and_jittered(client: Any, clock: FakeClock) -> None:
    assert signing.SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    skill = make(client, clock, ScriptedTransport(), webhook_retry_scale=0.001)
    delays = skill.schedule_delays("op-1", 1)
    assert len(delays) == 7
    for delay, spec in zip(delays, signing.SCHEDULE_S[1:], strict=True):
        assert spec * 0.001 * 0.9 <= delay <= spec * 0.001 * 1.1
    assert delays == skill.schedule_delays("op-1", 1) and delays != skill.schedule_delays("op-2", 1)


def test_five_failures_open_the_breaker_mid_schedule_and_the_attempts_are_kept(client: Any,
                                                                               clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(500))
    skill = make(client, clock, transport, webhook_retry_scale=0.0001, skill_max_wait_s=60)
    with pytest.raises(CircuitOpen) as caught:
        skill.execute({"url": "https://a.hooks.example.com/x", "payload": {}, "secrets": [OLD]}, ctx())
    assert len(transport.requests) == 5 and caught.value.attempts == 5  # seed 004: five failures open it
    state = KvTable(KV_TABLE, client, clock).get("tenant-a", DELIVERIES, transport.requests[0].headers["webhook-id"])
    assert state is not None and state.value["attempts"] == 5
    assert caught.value.retry_after_s == pytest.approx(60, abs=1)  # the cooldown, longer than the schedule's wait


def test_after_the_eighth_failed_attempt_the_message_is_given_up(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(500))
    skill = make(client, clock, transport, webhook_retry_scale=0.0001, skill_max_wait_s=60)
    args = {"url": "https://b.hooks.example.com/x", "payload": {}, "secrets": [OLD]}
    outcomes = []
    for _ in range(4):  # 5 attempts until the breaker opens; then one half-open probe per cooldown
        with pytest.raises((ExternalError, CircuitOpen)) as caught:
            skill.execute(args, ctx())
        outcomes.append(caught.value.code)
        clock.advance(61)
    assert len(transport.requests) == 8
    assert outcomes[-1] == "webhook_exhausted" and not caught.value.retryable
    with pytest.raises(ExternalError, match="all 8 attempts"):
        skill.execute(args, ctx())
    assert len(transport.requests) == 8


def test_a_410_disables_the_endpoint_until_it_is_enabled(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(response(410, b"gone"))
    skill = make(client, clock, transport)
    args = {"url": URL, "payload": {"n": 1}, "secrets": [OLD]}
    with pytest.raises(EndpointDisabled):
        skill.execute(args, ctx("k1"))
    with pytest.raises(EndpointDisabled, match="410"):
        skill.execute(args, ctx("k2"))
    assert len(transport.requests) == 1  # the second send was refused without a request
    assert enable_endpoint("tenant-a", URL, KvTable(KV_TABLE, client, clock)) is True
    assert skill.execute(args, ctx("k3"))["status_code"] == 200


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]:8080/hook", "http://localhost:8080/hook",
                                 "http://[::ffff:192.168.1.1]/hook", "https://rebind.example.com/hook"])
def test_private_loopback_and_link_local_targets_are_refused(url: str, client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    with pytest.raises(TargetNotAllowed):
        make(client, clock, transport).execute({"url": url, "payload": {}, "secrets": [OLD]}, ctx())
    assert transport.requests == []


@pytest.mark.parametrize(("allow", "url"), [("127.0.0.1", "http://127.0.0.1:9/hook"),
                                            ("10.0.0.0/8", "http://10.0.0.5/hook"),
                                            ("rebind.example.com", "https://rebind.example.com/hook")])
def test_an_allow_listed_host_or_network_is_reached(allow: str, url: str, client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    make(client, clock, transport, webhook_allow_hosts=allow).execute(
        {"url": url, "payload": {}, "secrets": [OLD]}, ctx())
    assert len(transport.requests) == 1


def test_a_payload_over_the_limit_is_refused_before_any_lookup(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    with pytest.raises(SizeLimitExceeded, match="limit is 262144"):
        make(client, clock, transport).execute({"url": URL, "payload": "x" * 262_144, "secrets": [OLD]}, ctx())
    assert transport.requests == []


@pytest.mark.parametrize("args", [
    {"url": URL, "payload": {}, "secrets": ["not-a-secret"]},
    {"url": URL, "payload": {}, "secrets": [signing.PREFIX + base64.b64encode(b"short").decode()]},
    {"url": URL, "payload": {}},
    {"url": URL, "payload": {}, "secrets": [OLD], "secret_parameter": HOOKS},
    {"url": "ftp://hooks.example.com/x", "payload": {}, "secrets": [OLD]},
    {"url": "https://user:pw@hooks.example.com/x", "payload": {}, "secrets": [OLD]},
])
def test_bad_secrets_and_urls_are_input_errors(args: dict, client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport()
    with pytest.raises(SkillInputError):
        make(client, clock, transport).execute(args, ctx())
    assert transport.requests == []
