"""In-memory stand-ins for unit tests of the skills: a scripted HTTP transport and a clock whose sleep()
advances it (so waits are measured, not slept)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from incident_loop.skills.transport import HttpRequest, HttpResponse, TransportError

Answer = HttpResponse | TransportError | Callable[[HttpRequest], HttpResponse]


def response(status: int = 200, body: Any = b"", headers: dict[str, str] | None = None) -> HttpResponse:
    """An HttpResponse; a non-bytes body is sent as JSON."""
    import json

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {k.lower(): v for k, v in (headers or {}).items()}, raw)


class ScriptedTransport:
    """Answers requests from a script, in order, then with `default`; records every request.

    A script entry is an HttpResponse, a TransportError (raised) or a function of the request.
    """

    def __init__(self, *script: Answer, default: Answer | None = None) -> None:
        self.script: deque[Answer] = deque(script)
        self.default: Answer = default if default is not None else response(200, {"ok": True})
        self.requests: list[HttpRequest] = []
        self.timeouts: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def then(self, *answers: Answer) -> ScriptedTransport:
        """Append to the script."""
        self.script.extend(answers)
        return self

    def send(self, request: HttpRequest, connect_timeout_s: float, read_timeout_s: float) -> HttpResponse:
        with self._lock:
            self.requests.append(request)
            self.timeouts.append((connect_timeout_s, read_timeout_s))
            answer = self.script.popleft() if self.script else self.default
        if isinstance(answer, TransportError):
            raise answer
        if callable(answer) and not isinstance(answer, HttpResponse):
            return answer(request)
        return answer


class FakeClock:
    """time.time and time.sleep for a test: sleep(s) records s and moves the clock on."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
