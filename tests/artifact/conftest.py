"""What deploys is what is tested: every function run from `.aws-sam/build`, as Lambda would run it.

Each function runs in its own isolated interpreter with only its CodeUri, its layer and the boto3
of the python3.11 runtime on its path (incident_loop_dev.local.artifact), against moto's server
over HTTP and a fresh PostgreSQL database; the functions log in as the function role, which
row-level security binds, and the tests look at the outcome as the admin. Events come from
events/, with their placeholder ids replaced by the ids earlier invocations created.

One LocalCloud per test module (its hosts stay warm across the module's tests). A test names the
functions it proves with `@pytest.mark.invokes("LogicalId", ...)`; the test fails unless they were
invoked, and test_artifact_coverage.py fails unless every function of template.yaml is named.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from artifact_support import ROOT, Artifact, Recorder, require_build
from psycopg.rows import dict_row

LOG_LINES = 40  # of the functions' log, shown under a failed test


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "invokes(*logical_ids): the functions an artifact test runs from the build")


@pytest.fixture(scope="session")
def built() -> Path:
    """The built artifact and the runtime's SDK; without them every artifact test fails, saying how to make them."""
    return require_build(ROOT)


@pytest.fixture(scope="module")
def alert_receiver() -> Iterator[Recorder]:
    """Stands in for Alertmanager (POST /api/v2/alerts): what alert_worker delivered."""
    with Recorder() as server:
        yield server


@pytest.fixture(scope="module")
def cloud(built: Path, create_database: Any, alert_receiver: Recorder,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Artifact]:
    """A fresh database (migrated as the admin), moto's server, and the template's functions on them."""
    from incident_loop import migrate
    from incident_loop_dev.local.cloud import LocalCloud
    from incident_loop_dev.local.runner import reset_container_caches
    from incident_loop_dev.local.services import function_role_url, moto_server

    admin_url = str(create_database())
    migrate.apply(admin_url, ROOT / "migrations")
    logs = tmp_path_factory.mktemp("artifact") / "functions.log"
    saved = dict(os.environ)  # LocalApp exports the functions' variables into this process
    werkzeug = logging.getLogger("werkzeug")  # moto's server: one line per request otherwise
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    with moto_server() as endpoint, logs.open("w") as log, \
            psycopg.connect(admin_url, autocommit=True, row_factory=dict_row) as admin:
        # Migrations run as the schema's owner (the template gives MigrateFunction DbOwnerSecretArn);
        # every other function as the role row-level security binds. LocalCloud follows the template.
        env_vars = {"AlertWorkerFunction": {"ALERTMANAGER_URL": alert_receiver.url}}
        local = LocalCloud(ROOT, admin_url, function_role_url(admin_url), endpoint, logs=log, env_vars=env_vars)
        try:
            yield Artifact(local, admin, f"tenant-art-{uuid.uuid4().hex[:8]}", logs)
        finally:
            local.close()
            os.environ.clear()
            os.environ.update(saved)
            reset_container_caches()
            werkzeug.setLevel(level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test marked `invokes(...)` passes only if those functions really ran from the artifact.

    A failing test shows the end of the functions' own log (what a record failed with, a stack trace).
    """
    try:
        result = yield
    except BaseException:
        artifact = getattr(item, "funcargs", {}).get("cloud")
        if isinstance(artifact, Artifact) and artifact.logs.exists():
            tail = artifact.logs.read_text(errors="replace").splitlines()[-LOG_LINES:]
            item.add_report_section("call", f"functions' log ({artifact.logs})", "\n".join(tail))
        raise
    wanted = {name for mark in item.iter_markers("invokes") for name in mark.args}
    if wanted:
        artifact = getattr(item, "funcargs", {}).get("cloud")
        if not isinstance(artifact, Artifact):
            raise AssertionError("a test marked `invokes` must use the `cloud` fixture")
        not_run = wanted - set(artifact.invoked)
        if not_run:
            raise AssertionError(f"marked as invoking {sorted(not_run)}, which never ran")
    return result
