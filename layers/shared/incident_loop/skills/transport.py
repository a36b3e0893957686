"""Outbound HTTP for the skills, on urllib3 alone (the Lambda runtime ships 1.26; the dev virtualenv has 2.x).

Only the API both majors share is used: PoolManager / connection pools, `urllib3.Timeout`, `retries=False`
(the skills retry themselves, with their breaker and deterministic backoff) and `redirect=False` (a redirect
could lead a webhook past the SSRF guard). Bodies are read up to MAX_BODY_BYTES. A request may be pinned to
an address the SSRF guard already checked (`connect_ip`): the connection goes there while Host and TLS
(SNI and certificate check) still use the URL's host name, so DNS cannot be changed between check and use.
The answer (headers and body) must arrive within the call's connect and read timeouts together: a server that
sends a byte just inside each read timeout is cut off there (a watchdog shuts the socket), not by the
Lambda's own timeout.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
import urllib3.connection
from urllib3.util import parse_url

MAX_BODY_BYTES = 1024 * 1024  # responses are small JSON; anything larger is cut off (unless a request says)
MAX_PINNED_POOLS = 64


class TransportError(Exception):
    """No HTTP answer: `kind` is "timeout" or "connection_error"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class HttpRequest:
    """One attempt of an outbound call."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    connect_ip: str | None = None  # connect here instead of resolving the URL's host again
    max_body_bytes: int = 0  # the answer is read up to this (0: MAX_BODY_BYTES); a longer one is cut off


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer; header names are lower-case."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (ValueError if it is not)."""
        return json.loads(self.body.decode("utf-8"))

    def text(self, limit: int = 300) -> str:
        """The start of the body as text, for error messages."""
        return self.body[:limit].decode("utf-8", errors="replace")


_WATCHING = threading.local()  # the deadline of the call this thread is making


class _Deadline:
    """Shuts the socket of a call that has run past its time; read timeouts bound each wait for bytes, not
    the sum of them. The connection hands its socket over as it starts waiting for the answer (its
    headers, then its body)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._sock: socket.socket | None = None
        self._over = False  # the call is over (stop()): too late to cut it off
        self.passed = False

    def __enter__(self) -> _Deadline:
        _WATCHING.deadline = self
        return self

    def __exit__(self, *exc: object) -> None:
        _WATCHING.deadline = None
        self.stop()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._timer is None and not self._over:
                self._timer = threading.Timer(max(self._end - time.monotonic(), 0.0), self._expire)
                self._timer.daemon = True
                self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._over = True
            timer = self._timer
        if timer is not None:
            timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._over or self._sock is None:
                return
            self.passed = True
            sock = self._sock
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass


class _Watched:
    """A connection that hands its socket to the calling thread's deadline before it waits for an answer."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_WATCHING, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class Transport(Protocol):
    """Sends one request and returns the answer, or raises TransportError; never retries."""

    def send(self, request: HttpRequest, connect_timeout_s: float, read_timeout_s: float) -> HttpResponse: ...


class Urllib3Transport:
    """Transport on urllib3, one per container (pools are reused while warm)."""

    def __init__(self, max_pool_connections: int = 10, ca_certs: str | None = None) -> None:
        tls = {"ca_certs": ca_certs} if ca_certs else {}  # None: the system's trust store
        self._pools = urllib3.PoolManager(num_pools=20, maxsize=max_pool_connections, retries=False, **tls)
        self._pools.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        self._pinned: OrderedDict[tuple[str, str, int, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize, self._tls = max_pool_connections, tls

    def send(self, request: HttpRequest, connect_timeout_s: float, read_timeout_s: float) -> HttpResponse:
        timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        headers = dict(request.headers)
        options: dict[str, Any] = {"body": request.body, "headers": headers, "retries": False, "redirect": False,
                                   "timeout": timeout, "preload_content": False}
        with _Deadline(connect_timeout_s + read_timeout_s) as deadline:
            try:
                if request.connect_ip:
                    url = parse_url(request.url)
                    headers.setdefault("Host", url.netloc or "")
                    pool = self._pinned_pool(url.scheme or "http", request.connect_ip, url.port, url.host or "")
                    response = pool.urlopen(request.method, url.request_uri, **options)
                else:
                    response = self._pools.urlopen(request.method, request.url, **options)
                try:
                    most = request.max_body_bytes or MAX_BODY_BYTES
                    body = response.read(most + 1) or b""
                    if len(body) > most:  # unread bytes would poison a reused connection: drop it
                        body = body[:most]
                        response.close()
                finally:
                    deadline.stop()
                    if deadline.passed:  # cut off: the connection is not to be reused
                        response.close()
                    response.release_conn()
            except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError subclass, yet a refusal
                raise TransportError("connection_error", f"{request.method} {_where(request.url)} could not "
                                     f"connect: {type(exc).__name__}") from exc
            except urllib3.exceptions.TimeoutError as exc:
                raise TransportError("timeout", f"{request.method} {_where(request.url)} timed out: {exc}") from exc
            except urllib3.exceptions.HTTPError as exc:
                if deadline.passed:
                    raise _late(request, deadline.seconds) from exc
                if any(isinstance(arg, TimeoutError) for arg in exc.args):  # the request not taken in time
                    raise TransportError("timeout", f"{request.method} {_where(request.url)} timed out sending "
                                         "the request") from exc
                raise TransportError("connection_error", f"{request.method} {_where(request.url)} failed: "
                                     f"{type(exc).__name__}") from exc
        if deadline.passed:  # what was read before the cut may look whole: it is not
            raise _late(request, deadline.seconds)
        return HttpResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, body)

    def _pinned_pool(self, scheme: str, ip: str, port: int | None, host: str) -> Any:
        port = port or (443 if scheme == "https" else 80)
        key = (scheme, ip, port, host)
        with self._lock:
            pool = self._pinned.get(key)
            if pool is not None:
                self._pinned.move_to_end(key)
                return pool
            if scheme == "https":
                pool = _WatchedHTTPSPool(ip, port, maxsize=self._maxsize, retries=False,
                                         cert_reqs="CERT_REQUIRED", server_hostname=host,
                                         assert_hostname=host, **self._tls)
            else:
                pool = _WatchedHTTPPool(ip, port, maxsize=self._maxsize, retries=False)
            self._pinned[key] = pool
            if len(self._pinned) > MAX_PINNED_POOLS:
                _, oldest = self._pinned.popitem(last=False)
                oldest.close()
            return pool


def _late(request: HttpRequest, seconds: float) -> TransportError:
    return TransportError("timeout", f"{request.method} {_where(request.url)} did not finish within {seconds:g} s")


def _where(url: str) -> str:
    """Scheme and host of a URL only: paths and queries may hold secrets (a Slack webhook's path is one)."""
    parts = parse_url(url)
    return f"{parts.scheme}://{parts.netloc}"
