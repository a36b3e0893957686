"""Local stand-ins for the cloud: moto's server over HTTP and an embedded PostgreSQL."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on 127.0.0.1 (real HTTP); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    os.environ.update(LOCAL_AWS_ENV)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's backends live in the process: start every server from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    try:
        yield endpoint
    finally:
        server.stop()


@contextmanager
def postgres(database_url: str | None, data_dir: Path) -> Iterator[str]:
    """The given PostgreSQL, or an embedded one (pgserver) kept in `data_dir` between runs."""
    if database_url:
        try:
            psycopg.connect(database_url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise SystemExit(f"cannot reach DATABASE_URL ({exc}); unset it to use the embedded server") from exc
        yield database_url
        return
    import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
