"""The base of the fake receivers: a real HTTP/1.1 server on 127.0.0.1 (a free port), in a daemon thread.

Every request is recorded in `.calls`. Failures are scripted in order: `fail(503, times=2)`,
`fail(429, retry_after="2")`, `stall(3.0)` (answer only after 3 s, for timeouts); each scripted entry
answers one request, then the receiver's real behaviour (`handle`) resumes.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Call:
    """One request as the receiver got it; header names lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Scripted:
    status: int | None  # None: no failure, only the delay
    retry_after: str | None = None
    body: bytes = b""
    delay_s: float = 0.0


def reply_json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return status, {"content-type": "application/json", **(headers or {})}, json.dumps(body).encode()


class FakeServer:
    """A receiver: subclasses implement handle(call) -> (status, headers, body)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self._script: deque[Scripted] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url = ""
        self._tls: tuple[str, str] | None = None

    def use_tls(self, certfile: str, keyfile: str) -> Self:
        """Serve HTTPS with this certificate (call before start)."""
        self._tls = (certfile, keyfile)
        return self

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the skills' connection pools expect

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                owner._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self._url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port> (kept after stop(), for assertions)"""
        assert self._url, "the fake server was never started"
        return self._url

    # ------------------------------------------------------------------ scripting

    def fail(self, status: int, times: int = 1, retry_after: str | None = None, body: bytes = b"") -> None:
        """Answer the next `times` requests with `status` (and Retry-After, if given)."""
        with self.lock:
            self._script.extend([Scripted(status, retry_after, body)] * times)

    def stall(self, seconds: float, times: int = 1) -> None:
        """Hold the next `times` requests for `seconds` before answering them normally."""
        with self.lock:
            self._script.extend([Scripted(None, delay_s=seconds)] * times)

    def handle(self, call: Call) -> Reply:
        raise NotImplementedError

    # ------------------------------------------------------------------ serving

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        call = Call(request.command, request.path, {k.lower(): v for k, v in request.headers.items()},
                    request.rfile.read(length) if length else b"")
        with self.lock:
            self.calls.append(call)
            scripted = self._script.popleft() if self._script else None
        if scripted is not None and scripted.delay_s:
            time.sleep(scripted.delay_s)
        if scripted is not None and scripted.status is not None:
            headers = {"retry-after": scripted.retry_after} if scripted.retry_after else {}
            status, headers, body = scripted.status, {"content-type": "text/plain", **headers}, scripted.body
        else:
            status, headers, body = self.handle(call)
        try:
            request.send_response(status)
            for name, value in {**headers, "content-length": str(len(body))}.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer
