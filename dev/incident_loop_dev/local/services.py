"""Local stand-ins for the cloud: moto's server over HTTP and an embedded PostgreSQL."""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

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
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
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


APP_ROLE = "incident_loop_app"  # migration 0009: owns nothing, cannot bypass row-level security
FUNCTION_ROLE = "incident_loop_fn"


def function_role_url(admin_url: str) -> str:
    """The URL the functions connect with: admin_url's database as FUNCTION_ROLE.

    As the admin, creates FUNCTION_ROLE (LOGIN NOSUPERUSER NOBYPASSRLS, a member of APP_ROLE,
    no password: local trust authentication) if it is missing, and grants it CONNECT on the
    database. Migrations must have run (they create APP_ROLE). A URL already naming the function
    role is returned as it is.
    """
    if psycopg.conninfo.conninfo_to_dict(admin_url).get("user") == FUNCTION_ROLE:
        return admin_url
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
            raise RuntimeError(f"role {APP_ROLE} does not exist: apply the migrations first")
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (FUNCTION_ROLE,)).fetchone() is None:
            try:  # roles are cluster-wide: another database's setup may create it at the same time
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE {}").format(
                    sql.Identifier(FUNCTION_ROLE), sql.Identifier(APP_ROLE)))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass
        role = admin.execute("SELECT rolsuper, rolbypassrls, pg_has_role(rolname, %s, 'MEMBER') FROM pg_roles"
                             " WHERE rolname = %s", (APP_ROLE, FUNCTION_ROLE)).fetchone()
        if role is None or role[0] or role[1] or not role[2]:
            raise RuntimeError(f"role {FUNCTION_ROLE} must be a NOSUPERUSER NOBYPASSRLS member of {APP_ROLE}")
        database = admin.execute("SELECT current_database()").fetchone()
        assert database is not None
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(database[0]), sql.Identifier(FUNCTION_ROLE)))
    return psycopg.conninfo.make_conninfo(admin_url, user=FUNCTION_ROLE, password=None)


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
