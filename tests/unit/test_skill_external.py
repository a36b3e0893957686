"""ExternalSkill: failure classes, deterministic retries, Retry-After and the per-target shared breaker
(DynamoDB on moto in-process; a scripted transport and a fake clock, so no network and no real waits)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from incident_loop.breaker import BreakerState
from incident_loop.settings import Settings
from incident_loop.skills import metrics
from incident_loop.skills.base import ExternalSkill, SkillContext
from incident_loop.skills.deterministic import backoff_delays
from incident_loop.skills.errors import CircuitOpen, ExternalError
from incident_loop.skills.retrying import parse_retry_after
from incident_loop.skills.transport import HttpRequest, TransportError
from incident_loop_dev.fakes.aws import skill_breakers
from incident_loop_dev.fakes.emf import total
from incident_loop_dev.fakes.transport import FakeClock, ScriptedTransport, response

SETTINGS = Settings(skill_max_attempts=3, skill_max_wait_s=20, skill_connect_timeout_s=1.5, skill_read_timeout_s=4)


class PingArgs(BaseModel):
    target: str


class PingResult(BaseModel):
    status: int
    attempts: int


class Ping(ExternalSkill):
    name: ClassVar[str] = "ping"
    version: ClassVar[str] = "0.1.0"
    Input: ClassVar[type[BaseModel]] = PingArgs
    Output: ClassVar[type[BaseModel]] = PingResult
    deterministic: ClassVar[bool] = False

    def run(self, data: PingArgs, ctx: SkillContext) -> PingResult:
        sent = self.call(data.target, lambda attempt: HttpRequest("POST", f"https://{data.target}/ping"), ctx.key())
        return PingResult(status=sent.response.status, attempts=sent.attempts)


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(client: Any, clock: FakeClock) -> Any:
    return skill_breakers(client, clock=clock)


def ping(transport: ScriptedTransport, clock: FakeClock, breakers: Any, settings: Settings = SETTINGS) -> Ping:
    # No idempotency key in these calls: the idempotency store is never asked.
    return Ping(transport=transport, breaker_for=breakers, clock=clock, sleep=clock.sleep, settings=settings,
                persistence=object())  # type: ignore[arg-type]


CTX = SkillContext("tenant-a", idempotency_key="op-1")


def test_a_5xx_is_retried_after_the_keys_backoff(clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(response(503), response(502), response(200))
    skill = ping(transport, clock, breakers)
    result = skill.run(PingArgs(target="api.example"), CTX)
    assert (result.status, result.attempts) == (200, 3)
    assert clock.sleeps == backoff_delays("op-1", 2, Ping.backoff_base_s, Ping.backoff_cap_s)
    assert transport.timeouts[0] == (1.5, 4)  # the settings' bounds on every request


def test_the_same_key_waits_the_same_and_another_key_differently(client: Any) -> None:
    waits = []
    for key in ("op-1", "op-1", "op-2"):
        clock = FakeClock()
        transport = ScriptedTransport(response(500), response(500), response(200))
        ping(transport, clock, skill_breakers(client, clock=clock)).run(
            PingArgs(target=f"t-{len(waits)}.example"), SkillContext("t", idempotency_key=key))
        waits.append(clock.sleeps)
    assert waits[0] == waits[1] and waits[0] != waits[2] and len(waits[0]) == 2


def test_a_4xx_is_the_callers_error_not_retried_and_not_a_breaker_failure(clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(default=response(400, b"bad field"))
    skill = ping(transport, clock, breakers)
    for _ in range(10):
        with pytest.raises(ExternalError) as caught:
            skill.run(PingArgs(target="api.example"), CTX)
        assert (caught.value.code, caught.value.retryable, caught.value.status) == ("http_400", False, 400)
    assert len(transport.requests) == 10 and clock.sleeps == []
    status = breakers("api.example").status()
    assert status.state is BreakerState.CLOSED and status.consecutive_failures == 0


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_408_429_and_5xx_are_retryable_breaker_failures(status: int, clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(default=response(status))
    with pytest.raises(ExternalError) as caught:
        ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX)
    assert caught.value.retryable and caught.value.code == f"http_{status}" and caught.value.attempts == 3
    assert breakers("api.example").status().consecutive_failures == 3


def test_timeouts_are_retried_and_counted_on_the_breaker(clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(default=TransportError("timeout", "read timed out"))
    with pytest.raises(ExternalError) as caught:
        ping(transport, clock, breakers).run(PingArgs(target="slow.example"), CTX)
    assert caught.value.code == "timeout" and caught.value.retryable and len(transport.requests) == 3
    assert breakers("slow.example").status().consecutive_failures == 3


def test_retry_after_sets_the_wait_when_longer_than_the_backoff(clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(response(429, b"slow down", {"Retry-After": "7"}), response(200))
    result = ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX)
    assert result.attempts == 2 and clock.sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured(clock: FakeClock, breakers: Any) -> None:
    when = format_datetime(datetime.fromtimestamp(clock.now + 12, UTC), usegmt=True)
    transport = ScriptedTransport(response(503, headers={"Retry-After": when}), response(200))
    ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX)
    assert clock.sleeps == [pytest.approx(12.0, abs=1.0)]


def test_a_retry_after_beyond_the_wait_bound_is_handed_back_not_slept(clock: FakeClock, breakers: Any) -> None:
    transport = ScriptedTransport(response(429, headers={"Retry-After": "120"}), response(200))
    with pytest.raises(ExternalError) as caught:
        ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX)
    assert caught.value.retryable and caught.value.retry_after_s == 120.0
    assert clock.sleeps == [] and len(transport.requests) == 1


def test_parse_retry_after_handles_bad_and_negative_values() -> None:
    assert parse_retry_after(None, 0) is None and parse_retry_after("soon", 0) is None
    assert parse_retry_after("-5", 0) == 0.0 and parse_retry_after("2.5", 0) == 2.5
    assert parse_retry_after("99999999", 0) == 24 * 3600.0


def test_the_breaker_opens_after_five_failures_on_one_target_while_another_works(
        clock: FakeClock, breakers: Any, capsys: pytest.CaptureFixture) -> None:
    down = ScriptedTransport(default=response(500))
    up = ScriptedTransport(default=response(200))
    with pytest.raises(ExternalError):
        ping(down, clock, breakers).run(PingArgs(target="down.example"), CTX)  # 3 failures
    with pytest.raises(CircuitOpen) as opened:
        ping(down, clock, breakers).run(PingArgs(target="down.example"), CTX)  # 2 more: open; the 3rd refused
    assert len(down.requests) == 5 and opened.value.target == "down.example"
    with pytest.raises(CircuitOpen) as refused:
        ping(down, clock, breakers).run(PingArgs(target="down.example"), CTX)
    assert len(down.requests) == 5  # refused without a request
    assert refused.value.retry_after_s == pytest.approx(60.0, abs=5)  # seed 004's cooldown
    assert ping(up, clock, breakers).run(PingArgs(target="up.example"), CTX).status == 200
    assert breakers("down.example").status().state is BreakerState.OPEN
    assert breakers("up.example").status().state is BreakerState.CLOSED
    out = capsys.readouterr().out
    assert total(out, metrics.BREAKER_OPENS, target="down.example") == 1
    assert total(out, metrics.BREAKER_STATE, target="down.example") == 1  # the gauge: OPEN
    assert total(out, metrics.BREAKER_FAILURES, target="down.example") == 5
    assert total(out, metrics.BREAKER_REJECTIONS, target="down.example") == 2
    assert total(out, metrics.BREAKER_SUCCESSES, target="up.example") == 1


def test_after_the_cooldown_one_probe_closes_the_breaker(clock: FakeClock, breakers: Any,
                                                         capsys: pytest.CaptureFixture) -> None:
    transport = ScriptedTransport(*[response(500)] * 5, default=response(200))
    for _ in range(2):
        with pytest.raises((ExternalError, CircuitOpen)):
            ping(transport, clock, breakers).run(PingArgs(target="flaky.example"), CTX)
    assert breakers("flaky.example").status().state is BreakerState.OPEN
    clock.advance(61)
    assert ping(transport, clock, breakers).run(PingArgs(target="flaky.example"), CTX).status == 200
    assert breakers("flaky.example").status().state is BreakerState.CLOSED
    assert total(capsys.readouterr().out, metrics.BREAKER_CLOSES, target="flaky.example") == 1


class _Invocation:
    """A Lambda context whose remaining time is set by the test."""

    def __init__(self, left_s: float) -> None:
        self.left_s = left_s

    def get_remaining_time_in_millis(self) -> int:
        return int(self.left_s * 1000)


def test_a_request_is_not_sent_without_time_left_to_record_it(clock: FakeClock, breakers: Any) -> None:
    """A request sent near the invocation's timeout could take effect and be cut off before its record: the
    redelivery sent it again (a second Slack post). With less left than a request and its record take (the pacing
    wait, connect and read bounds, RECORD_RESERVE_S: 35.5 s here) nothing is sent, and the call comes back."""
    from incident_loop.skills.idempotency import _lambda_context
    from incident_loop.skills.retrying import RECORD_RESERVE_S

    need = SETTINGS.skill_max_wait_s + SETTINGS.skill_connect_timeout_s + SETTINGS.skill_read_timeout_s + \
        RECORD_RESERVE_S
    token = _lambda_context.set(_Invocation(need - 1))
    try:
        transport = ScriptedTransport(default=response(200))
        with pytest.raises(ExternalError) as caught:
            ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX)
        assert (caught.value.code, caught.value.retryable, caught.value.attempts) == ("out_of_time", True, 0)
        assert transport.requests == []
        _lambda_context.set(_Invocation(need + 1))
        assert ping(transport, clock, breakers).run(PingArgs(target="api.example"), CTX).status == 200
        # A retry's wait that would leave too little is not slept: the call comes back after it instead.
        _lambda_context.set(_Invocation(need + 0.01))
        transport = ScriptedTransport(response(503), default=response(200))
        with pytest.raises(ExternalError) as caught:
            ping(transport, clock, breakers).run(PingArgs(target="other.example"), CTX)
        assert caught.value.code == "http_503" and caught.value.retry_after_s and len(transport.requests) == 1
        assert clock.sleeps == []
    finally:
        _lambda_context.reset(token)
