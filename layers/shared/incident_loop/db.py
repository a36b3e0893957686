"""PostgreSQL connections (psycopg 3): one per container, reused while warm, reopened when broken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from incident_loop.settings import DEFAULT_DATABASE_URL, Settings, get_settings


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the caller decides whether to retry or fail the record."""


def conninfo(settings: Settings | None = None) -> str:
    """The connection string: DATABASE_URL locally; in AWS the secret's credentials and the proxy host."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    if settings.db_secret_arn:
        # Imported here: only deployed functions read secrets, and Parameters caches the value.
        from aws_lambda_powertools.utilities import parameters

        secret: dict[str, Any] = json.loads(parameters.get_secret(settings.db_secret_arn, max_age=300))
        return psycopg.conninfo.make_conninfo(
            host=settings.db_proxy_endpoint or secret["host"],
            port=secret.get("port", 5432),
            dbname=settings.db_name or secret.get("dbname"),
            user=secret["username"],
            password=secret["password"],
            sslmode="require",
        )
    return DEFAULT_DATABASE_URL


def connect(dsn: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[dict[str, Any]]:
    """A new connection with dict rows; server-side prepares off so RDS Proxy / PgBouncer work."""
    settings = get_settings()
    try:
        return psycopg.connect(
            dsn or conninfo(settings),
            autocommit=autocommit,
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=settings.db_connect_timeout_s,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc)) from exc


_conn: psycopg.Connection[dict[str, Any]] | None = None


def get_connection() -> psycopg.Connection[dict[str, Any]]:
    """The container's connection, reopened if the previous one is closed or broken."""
    global _conn
    if _conn is None or _conn.closed or _conn.broken:
        _conn = connect()
    return _conn


def reset_connection() -> None:
    """Close and forget the container's connection (tests, settings changes)."""
    global _conn
    if _conn is not None and not _conn.closed:
        _conn.close()
    _conn = None


def set_tenant(conn: psycopg.Connection[Any], tenant_id: str | None) -> None:
    """Scope the rest of the current transaction to one tenant (row-level security's app.tenant_id).

    None scopes it to no tenant: tenant tables then show no rows and refuse every insert, which
    is what a transaction touching only global tables (breakers, canary reports) should see.
    """
    conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id or "",))


@contextmanager
def transaction(
    conn: psycopg.Connection[Any] | None = None, *, tenant_id: str | None
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction on the given (or the container's) connection, scoped to `tenant_id`.

    The tenant is set in the same transaction (SET LOCAL semantics), so it ends with it and a
    reused connection never carries one tenant's scope into the next. A broken connection is dropped.
    """
    conn = conn or get_connection()
    try:
        with conn.transaction():
            set_tenant(conn, tenant_id)
            yield conn
    except psycopg.OperationalError as exc:
        if conn is _conn:
            reset_connection()
        raise DatabaseUnavailable(str(exc)) from exc
