"""Calling an external target through its breaker: bounded attempts, deterministic waits, Retry-After.

Failure classes (seed 004): 2xx is a success; 408, 429, 5xx, timeouts and connection errors are the
target's failures (counted on its breaker, retried); any other 4xx is the caller's error (not retried,
never a breaker failure: the target answered, so it counts as a success for the breaker, which also lets
a half-open probe that gets a 4xx close it). A 3xx is not followed (see transport.py) and is the caller's.

A wait is the larger of the deterministic backoff delay and the target's Retry-After. A wait longer than
`skill_max_wait_s` is not slept inside the call: the error is raised with `retry_after_s`, so the caller
(a queue, a workflow step) comes back then instead of holding a Lambda idle.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import incident_loop.skills.metrics as metrics
from incident_loop.breaker import Breaker, BreakerState
from incident_loop.settings import Settings
from incident_loop.skills.errors import CircuitOpen, ExternalError
from incident_loop.skills.idempotency import invocation_left_s
from incident_loop.skills.transport import HttpRequest, HttpResponse, Transport, TransportError

RETRYABLE_STATUSES = frozenset({408, 429})
# What must be left of the invocation, after a request's own bounds (its pacing wait, connect and read), for its
# result to be recorded (the skill's idempotency record, the runner's op). A request sent with less could be cut
# off by the invocation's timeout after it took effect and before it was recorded: the redelivery sends it again.
RECORD_RESERVE_S = 10.0
MAX_RETRY_AFTER_S = 24 * 3600.0  # a larger Retry-After is taken as this: a day is already "come back later"
_hook_lock = threading.Lock()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def failure_of(response: HttpResponse, now: float) -> ExternalError | None:
    """None for a 2xx; otherwise the ExternalError the answer stands for, retryable per its class."""
    status = response.status
    if 200 <= status < 300:
        return None
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ExternalError(f"HTTP {status}: {response.text()}", code=f"http_{status}", retryable=retryable,
                         status=status, retry_after_s=parse_retry_after(response.headers.get("retry-after"), now))


def with_metrics(breaker: Breaker) -> Breaker:
    """The breaker, with the skills' transition metrics hooked on (once)."""
    with _hook_lock:
        if metrics.on_transition not in breaker.on_transition:
            breaker.on_transition.append(metrics.on_transition)
    return breaker


def shared_breaker(target: str) -> Breaker:
    """The container's `skill:<target>` breaker on the shared DynamoDB breakers table."""
    from incident_loop import breakers  # its history store pulls in psycopg: only when a call is made

    return with_metrics(breakers.for_skill(target))


@dataclass(frozen=True)
class Delivered:
    """A successful call: the answer and how many requests it took."""

    response: HttpResponse
    attempts: int


class Caller:
    """Makes one logical call of at most len(delays) + 1 requests to a target."""

    def __init__(self, transport: Transport, breaker_for: Callable[[str], Breaker], settings: Settings,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.transport, self.breaker_for, self.settings = transport, breaker_for, settings
        self.sleep, self.clock = sleep, clock

    def call(self, target: str, build: Callable[[int], HttpRequest], delays: Sequence[float]) -> Delivered:
        """Send build(attempt) until a success, a non-retryable answer, the last attempt or a long wait.

        Raises CircuitOpen when the breaker refuses an attempt, ExternalError otherwise.
        """
        attempts = len(delays) + 1
        for attempt in range(attempts):
            self._in_time(target, attempt)
            breaker = self.breaker_for(target)
            if not breaker.allow():
                metrics.breaker_outcome(target, metrics.BREAKER_REJECTIONS)
                raise CircuitOpen(f"the breaker of {target} is open; the call was not made", target=target,
                                  retry_after_s=self._cooldown_left(breaker), attempts=attempt)
            outcome = self._once(breaker, target, build(attempt))
            if isinstance(outcome, HttpResponse):
                return Delivered(outcome, attempt + 1)
            outcome.attempts = attempt + 1
            if not outcome.retryable or attempt == attempts - 1:
                raise outcome
            if self._opened(breaker):  # this failure tripped it: waiting for a refused attempt is pointless
                metrics.breaker_outcome(target, metrics.BREAKER_REJECTIONS)
                raise CircuitOpen(f"the breaker of {target} opened after {attempt + 1} attempts: {outcome}",
                                  target=target, retry_after_s=self._cooldown_left(breaker),
                                  attempts=attempt + 1) from outcome
            wait = max(delays[attempt], outcome.retry_after_s or 0.0)
            if wait > self.settings.skill_max_wait_s or not self._time_for(wait):
                outcome.retry_after_s = wait
                raise outcome
            self.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request_s(self) -> float:
        """The longest one request may hold the invocation: its pacing wait, connect and read, and its record."""
        s = self.settings
        return s.skill_max_wait_s + s.skill_connect_timeout_s + s.skill_read_timeout_s + RECORD_RESERVE_S

    def _time_for(self, wait: float) -> bool:
        """Whether the invocation (if any) has time to wait `wait` s, then make one request and record it."""
        left = invocation_left_s()
        return left is None or left >= wait + self._request_s()

    def _in_time(self, target: str, attempt: int) -> None:
        """Raises (retryable, nothing sent) when the invocation has no time for one more request and its record."""
        if not self._time_for(0.0):
            raise ExternalError(f"too little of the invocation is left for a request to {target} and its record "
                                f"({self._request_s():.0f} s): not sent; the call comes back in a new one",
                                code="out_of_time", retryable=True, retry_after_s=1.0, attempts=attempt)

    def _once(self, breaker: Breaker, target: str, request: HttpRequest) -> HttpResponse | ExternalError:
        try:
            response = self.transport.send(request, self.settings.skill_connect_timeout_s,
                                           self.settings.skill_read_timeout_s)
        except TransportError as exc:
            breaker.record_failure(exc.kind)
            metrics.breaker_outcome(target, metrics.BREAKER_FAILURES, exc.kind)
            return ExternalError(str(exc), code=exc.kind, retryable=True)
        error = failure_of(response, self.clock())
        if error is not None and error.retryable:
            breaker.record_failure(error.code)
            metrics.breaker_outcome(target, metrics.BREAKER_FAILURES, error.code)
            return error
        breaker.record_success()
        metrics.breaker_outcome(target, metrics.BREAKER_SUCCESSES)
        return response if error is None else error

    def _opened(self, breaker: Breaker) -> bool:
        record = breaker.cached()
        return record is not None and record.state is BreakerState.OPEN and \
            (record.cooldown_until is None or record.cooldown_until > self.clock())

    def _cooldown_left(self, breaker: Breaker) -> float | None:
        record = breaker.cached()
        if record is None or record.cooldown_until is None:
            return None
        return max(record.cooldown_until - self.clock(), 0.0)
