"""slack_send: chat.postMessage and incoming webhooks, per-channel pacing across instances, 429 back-pressure.
Scripted transport, moto in-process for the pacing items and breakers, a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from incident_loop.settings import Settings
from incident_loop.skills import pacing
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import ExternalError, SkillError, SkillInputError, TargetNotAllowed
from incident_loop.skills.kvtable import KvTable, KvUnavailable
from incident_loop.skills.slack_send import SlackSendSkill
from incident_loop_dev.fakes.aws import KV_TABLE, skill_breakers
from incident_loop_dev.fakes.transport import FakeClock, ScriptedTransport, response

HOOK = "/incident-loop/test/tenants/tenant-a/slack-hook"
SECRETS = {"/slack/token": "xoxb-123", HOOK: "https://hooks.slack.example/services/T/B/secret"}
CTX = SkillContext("tenant-a")


def ok(request: Any) -> Any:
    body = json.loads(request.body)
    return response(200, {"ok": True, "channel": body["channel"], "ts": "1700000000.000100"})


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(client: Any, clock: FakeClock, transport: ScriptedTransport, breakers: Any = None,
         **settings: Any) -> SlackSendSkill:
    config = Settings(**{"slack_base_url": "https://slack.example/api", "slack_token_parameter": "/slack/token",
                         "skill_max_wait_s": 20.0, **settings})
    return SlackSendSkill(kv=KvTable(KV_TABLE, client, clock), transport=transport, clock=clock, sleep=clock.sleep,
                          breaker_for=breakers or skill_breakers(client, clock=clock), settings=config,
                          secret_source=SECRETS.__getitem__, persistence=object(),  # type: ignore[arg-type]
                          resolver=lambda host, port: ["93.184.216.34"])


def test_chat_post_message_sends_the_bearer_token_and_returns_the_ts(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=ok)
    out = make(client, clock, transport).execute({"channel": "C1", "text": "hello"}, CTX)
    request = transport.requests[0]
    assert request.url == "https://slack.example/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer xoxb-123"
    assert json.loads(request.body or b"") == {"channel": "C1", "text": "hello"}
    assert out == {"via": "api", "channel": "C1", "ts": "1700000000.000100", "delivered": True}


def test_messages_to_one_channel_are_paced_to_one_per_second(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=ok)
    skill = make(client, clock, transport)
    for text in ("one", "two", "three"):
        skill.execute({"channel": "C1", "text": text}, CTX)
    assert clock.sleeps == [1.0, 1.0]
    skill.execute({"channel": "C2", "text": "elsewhere"}, CTX)
    assert clock.sleeps == [1.0, 1.0]  # another channel has its own slots


def test_pacing_holds_across_instances_sharing_the_table(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=ok)
    first, second = make(client, clock, transport), make(client, clock, transport)
    first.execute({"channel": "C1", "text": "a"}, CTX)
    second.execute({"channel": "C1", "text": "b"}, CTX)  # another container: the slot is taken in DynamoDB
    assert clock.sleeps == [1.0]


def test_a_slot_too_far_away_is_handed_back_without_sending(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=ok)
    others = make(client, clock, transport, skill_max_wait_s=1.5)
    others.sleep = lambda seconds: None  # other containers take the next two slots at this same moment
    others.execute({"channel": "C1", "text": "a"}, CTX)
    others.execute({"channel": "C1", "text": "b"}, CTX)
    skill = make(client, clock, transport, skill_max_wait_s=1.5)
    with pytest.raises(ExternalError) as caught:
        skill.execute({"channel": "C1", "text": "c"}, CTX)
    assert caught.value.code == "rate_limited" and caught.value.retryable
    assert caught.value.retry_after_s == pytest.approx(2.0) and len(transport.requests) == 2


def test_a_429_is_back_pressure_its_retry_after_is_waited_and_counted(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"}),
                                  default=ok)
    breakers = skill_breakers(client, clock=clock)
    used: list[str] = []

    def breaker_for(target: str) -> Any:
        used.append(target)
        return breakers(target)

    out = make(client, clock, transport, breaker_for).execute({"channel": "C1", "text": "hi"}, CTX)
    assert out["ts"] and clock.sleeps == [3.0] and len(transport.requests) == 2
    # The tenant's own breaker: Slack paces a tenant's channel, and its 429s must refuse no other tenant's posts.
    assert set(used) == {"tenant-a/slack"}
    # Seed 004 classes 429 as a failure: counted, then reset by the success that followed.
    assert breakers("tenant-a/slack").status().consecutive_failures == 0
    assert breakers("tenant-a/slack").history.of("skill:tenant-a/slack") == []  # one failure opens nothing


@pytest.mark.parametrize(("error", "retryable"), [("channel_not_found", False), ("invalid_auth", False),
                                                  ("ratelimited", True), ("internal_error", True)])
def test_slack_errors_in_a_200_answer_are_classed(error: str, retryable: bool, client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(200, {"ok": False, "error": error}))
    with pytest.raises(ExternalError) as caught:
        make(client, clock, transport).execute({"channel": "C1", "text": "hi"}, CTX)
    assert caught.value.code == f"slack_{error}" and caught.value.retryable is retryable


def test_without_a_token_parameter_the_api_route_is_not_configured(client: Any, clock: FakeClock) -> None:
    with pytest.raises(SkillError) as caught:
        make(client, clock, ScriptedTransport(), slack_token_parameter=None).execute({"channel": "C1", "text": "x"},
                                                                                     CTX)
    assert caught.value.code == "not_configured"


def test_an_incoming_webhook_from_a_parameter_is_posted_without_a_token(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(200, b"ok"))
    out = make(client, clock, transport).execute({"webhook_parameter": HOOK, "text": "hi"}, CTX)
    request = transport.requests[0]
    assert request.url == SECRETS[HOOK] and "authorization" not in request.headers
    assert request.connect_ip == "93.184.216.34" and json.loads(request.body or b"") == {"text": "hi"}
    assert out == {"via": "webhook", "channel": None, "ts": None, "delivered": True}


def test_an_incoming_webhook_error_is_the_callers(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(404, b"no_service"))
    with pytest.raises(ExternalError) as caught:
        make(client, clock, transport).execute({"webhook_url": "https://hooks.slack.example/x", "text": "hi"}, CTX)
    assert caught.value.code == "http_404" and not caught.value.retryable and "no_service" in str(caught.value)


def test_a_private_incoming_webhook_url_is_refused(client: Any, clock: FakeClock) -> None:
    skill = make(client, clock, ScriptedTransport())
    skill.resolver = lambda host, port: ["10.0.0.9"]
    with pytest.raises(TargetNotAllowed):
        skill.execute({"webhook_url": "https://internal.example/hook", "text": "hi"}, CTX)


@pytest.mark.parametrize("args", [{"text": "no route"}, {"channel": "C1", "text": ""},
                                  {"webhook_url": "https://a/x", "webhook_parameter": "/p", "text": "x"}])
def test_bad_slack_arguments_are_input_errors(args: dict, client: Any, clock: FakeClock) -> None:
    with pytest.raises(SkillInputError):
        make(client, clock, ScriptedTransport()).execute(args, CTX)


def test_a_secret_named_in_the_arguments_must_be_the_tenants_own(client: Any, clock: FakeClock) -> None:
    transport = ScriptedTransport(default=response(200, b"ok"))
    skill = make(client, clock, transport)
    for foreign in ("/incident-loop/test/tenants/tenant-b/slack-hook", "/slack/token", "/incident-loop/test/db"):
        with pytest.raises(SkillInputError) as refused:
            skill.execute({"webhook_parameter": foreign, "text": "hi"}, CTX)
        assert "not one of the tenant's own" in str(refused.value)
        with pytest.raises(SkillInputError):
            skill.execute({"channel": "C1", "token_parameter": foreign, "text": "hi"}, CTX)
    assert transport.requests == []  # nothing was read or sent


def test_the_next_message_waits_an_interval_after_a_slow_one_was_done(client: Any, clock: FakeClock) -> None:
    """Slack counts arrivals: a message that took 0.5 s to go out arrived late in its slot, so the next one
    waits 1 s from when it was done, not from when it started."""

    def slow(request: Any) -> Any:
        clock.advance(0.5)
        return ok(request)

    transport = ScriptedTransport(default=slow)
    skill, other = make(client, clock, transport), make(client, clock, transport)
    for text in ("one", "two", "three"):
        skill.execute({"channel": "C1", "text": text}, CTX)
    assert clock.sleeps == [1.0, 1.0]  # each call began when the last was done: a whole interval to wait
    clock.advance(0.2)  # another container, 0.2 s after the last message was done
    other.execute({"channel": "C1", "text": "four"}, CTX)
    assert clock.sleeps == [1.0, 1.0, pytest.approx(0.8)]


def test_a_delivered_message_stays_delivered_when_the_later_slot_cannot_be_stored(
        client: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise KvUnavailable("compare-and-set on kv: throttled")

    monkeypatch.setattr(pacing, "hold", unavailable)
    transport = ScriptedTransport(default=ok)
    out = make(client, clock, transport).execute({"channel": "C1", "text": "once"}, CTX)
    assert out["delivered"] and out["ts"] and len(transport.requests) == 1


def _granting(channels: str | None) -> Any:
    """The secrets as skills.secrets.fetch gives them, with the tenant's granted channels (None: never set)."""
    def fetch(name: str) -> str:
        if name == "/incident-loop/prod/slack-grants/tenant-a" and channels is not None:
            if not channels.strip():  # as fetch refuses an empty value
                raise SkillError(f"secret {name!r} is empty", code="secret_unavailable", retryable=False)
            return channels
        if name in SECRETS:
            return SECRETS[name]
        raise SkillError(f"secret {name!r} could not be read (it does not exist)", code="secret_not_found",
                         retryable=False)
    return fetch


@pytest.mark.parametrize(("channels", "channel", "sent"), [
    ("C1, #ops", "C1", True), ("C1 #ops", "#ops", True), ("c1,#OPS", "#ops", True),  # without case
    ("C1, #ops", "C2", False),  # tenant-b's channel, say: the deployment's bot is in it too
    (None, "C1", False),  # no channels granted to the tenant
    ("  ", "C1", False),  # an empty grant grants nothing (not retried)
])
def test_the_deployments_bot_posts_for_a_tenant_only_to_the_channels_granted_to_it(
        client: Any, clock: FakeClock, channels: str | None, channel: str, sent: bool) -> None:
    """Before, any tenant's workflow could post, as the deployment's bot, to any channel the bot was in: another
    tenant's on-call channel among them."""
    transport = ScriptedTransport(default=ok)
    skill = make(client, clock, transport, stage="prod")
    skill._secret_source = _granting(channels)  # type: ignore[attr-defined]
    if sent:
        assert skill.execute({"channel": channel, "text": "hi"}, CTX)["channel"] == channel
    else:
        with pytest.raises(SkillInputError) as refused:
            skill.execute({"channel": channel, "text": "hi"}, CTX)
        assert "/incident-loop/prod/slack-grants/tenant-a" in str(refused.value)
    assert len(transport.requests) == int(sent)


def test_a_tenants_own_bot_token_posts_to_any_channel_it_is_in(client: Any, clock: FakeClock) -> None:
    own = "/incident-loop/prod/tenants/tenant-a/slack-token"
    SECRETS[own] = "xoxb-own"
    try:
        transport = ScriptedTransport(default=ok)
        skill = make(client, clock, transport, stage="prod")
        skill._secret_source = _granting(None)  # type: ignore[attr-defined]
        skill.execute({"channel": "C9", "token_parameter": own, "text": "hi"}, CTX)
        assert transport.requests[0].headers["authorization"] == "Bearer xoxb-own"
    finally:
        del SECRETS[own]


def test_a_tenant_id_no_parameter_name_can_hold_is_refused_at_once_not_retried(client: Any, clock: FakeClock) -> None:
    """Older tokens may carry ids like acme@eu: SSM refuses such a name (ValidationException), which was retried for
    hours into the DLQ as an unreadable secret."""
    transport = ScriptedTransport(default=ok)
    skill = make(client, clock, transport, stage="prod")
    skill._secret_source = _granting("C1")  # type: ignore[attr-defined]
    with pytest.raises(SkillInputError) as refused:
        skill.execute({"channel": "C1", "text": "hi"}, SkillContext("acme@eu"))
    assert "cannot name a grant" in str(refused.value) and transport.requests == []
