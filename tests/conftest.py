"""Shared fixtures: a real PostgreSQL per test run, moto (in-process and over HTTP), Lambda context, events."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import sql
from psycopg.rows import dict_row

from incident_loop import db, migrate, settings
from incident_loop_dev.fakes.aws import create_skill_tables
from incident_loop_dev.local.runner import FakeContext, reset_container_caches
from incident_loop_dev.local.services import LOCAL_AWS_ENV, function_role_url

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START_HINT = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

os.environ.update(LOCAL_AWS_ENV)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "IncidentLoopTest")


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); {START_HINT}", pytrace=False)


def _url_for(name: str) -> str:
    return psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)


@pytest.fixture(scope="session")
def create_database() -> Iterator[Any]:
    """A factory of fresh, empty databases, all dropped at the end of the run."""
    made: list[str] = []

    def make() -> str:
        name = f"il_test_{uuid.uuid4().hex[:12]}"
        with _admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return _url_for(name)

    yield make
    db.reset_connection()
    with _admin() as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def admin_db_url(create_database: Any) -> str:
    """This test run's own database, migrated, as the admin (the owner; row-level security does not apply)."""
    url = create_database()
    migrate.apply(url)
    return str(url)


@pytest.fixture(scope="session")
def db_url(admin_db_url: str) -> str:
    """The same database as the functions' role: every test through it runs under row-level security.

    Tests isolate themselves by tenant, and the database enforces it.
    """
    return function_role_url(admin_db_url)


@pytest.fixture
def admin_conn(admin_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test database as the admin: sees every tenant's rows."""
    with psycopg.connect(admin_db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def empty_db_url(create_database: Any) -> str:
    """A fresh database with nothing in it (for migration tests)."""
    return str(create_database())


@pytest.fixture
def loop_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The package configured for the test database; caches reset before and after."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    settings.get_settings.cache_clear()
    db.reset_connection()
    yield db_url
    db.reset_connection()
    settings.get_settings.cache_clear()


@pytest.fixture
def conn(loop_env: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test database (the same one the package uses)."""
    yield db.get_connection()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext(function_name="test-function")


@pytest.fixture
def load_event() -> Any:
    """Events live once, in events/, and serve both the tests and `sam local invoke -e`."""

    def load(name: str) -> dict[str, Any]:
        return dict(json.loads((EVENTS / name).read_text()))

    return load


@pytest.fixture
def local_app(loop_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The whole application on in-process moto and the test database, wired from template.yaml."""
    from moto import mock_aws

    from incident_loop_dev.local.runner import LocalApp

    for name in ("PATTERN_QUEUE_URL", "RECOVERY_QUEUE_URL", "POLICY_QUEUE_URL", "ROUTING_QUEUE_URL",
                 "IDEMPOTENCY_TABLE", "BREAKERS_TABLE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        app = LocalApp(ROOT, None, loop_env)  # type: ignore[arg-type]
        app.provision()
        yield app
    for name in app.exported:
        os.environ.pop(name, None)
    reset_container_caches()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Prometheus Alertmanager on 127.0.0.1, installed and started by scripts/alertmanager."""
    import subprocess

    from incident_loop_dev.local.services import free_port

    script = str(ROOT / "scripts" / "alertmanager")
    workdir = tmp_path_factory.mktemp("alertmanager")
    port = free_port()

    class Manager:
        url = f"http://127.0.0.1:{port}"

        def start(self) -> None:
            done = subprocess.run([script, "start", str(port), str(workdir)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"Alertmanager did not start: {done.stderr}", pytrace=False)

        def stop(self) -> None:
            subprocess.run([script, "stop", str(workdir)], check=True)

    manager = Manager()
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture
def alerting_app(loop_env: str, alertmanager: Any) -> Iterator[Any]:
    """local_app, with alert_worker pointed at the real Alertmanager."""
    from moto import mock_aws

    from incident_loop_dev.local.runner import LocalApp

    with mock_aws():
        app = LocalApp(ROOT, None, loop_env, parameters={"AlertmanagerUrl": alertmanager.url})
        app.provision()
        yield app
    for name in app.exported:
        os.environ.pop(name, None)
    reset_container_caches()


@pytest.fixture
def eventually() -> Any:
    """Poll `check` until it returns something truthy or `timeout` passes; returns its last value."""
    import time

    def wait(check: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    return wait


# A test's one-line summary (record_property("summary", ...)), printed at the end of the run: the workers'
# output does not reach the terminal, their reports do.
_SUMMARIES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _SUMMARIES.extend(str(value) for name, value in report.user_properties if name == "summary")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _SUMMARIES:
        terminalreporter.write_line(line)


@pytest.fixture
def skill_tables() -> Iterator[Any]:
    """In-process moto's DynamoDB with the skills' tables (kv, idempotency, breakers): its client."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_skill_tables(client)
        yield client
