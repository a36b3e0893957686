"""Faults over `incident-loop local start-api`: the built functions, real tokens, PostgreSQL behind a proxy.

The proxy takes PostgreSQL down (refused, established connections cut) or black-holes it; an admin
connection locks a table or kills the functions' backends. Each request answers within the bound,
503 with Retry-After when it cannot be served; after the fault is gone the client's retry stores
exactly what a fault-free run of the same incident stores, in every table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from local_http import Answer, LocalApi
from psycopg.rows import dict_row

from incident_loop_dev.faults import BOUND_S, FaultProxy, kill_function_backends, locked, note, tenant_rows, timed
from incident_loop_dev.local.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@dataclass
class Proxied:
    api: LocalApi
    proxy: FaultProxy
    admin: psycopg.Connection[Any]

    def report(self, tenant: str, n: int = 1) -> tuple[Answer, float]:
        body = {"agent_id": "agent-1", "run_id": f"run-{n}", "error_type": "SkillTimeoutError",
                "skill_id": "web_search", "severity": "high",
                "error_message": f"Skill web_search timed out after {10 * n}s calling https://api.example.com/q?id={n}"}
        return timed(lambda: self.api.send("POST", "/incidents", self.api.token(tenant), json_body=body))

    def fault_free(self) -> dict[str, int]:
        """The rows one fault-free incident leaves, in a tenant of its own."""
        tenant = f"baseline-{uuid.uuid4().hex[:8]}"
        answer, _ = self.report(tenant)
        assert answer.status == 202, answer.body
        self.api.drained()
        return tenant_rows(self.admin, tenant)


@pytest.fixture(scope="module")
def proxied(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """`local start-api` whose functions reach PostgreSQL only through a FaultProxy (needs `make build`)."""
    admin_url = create_database()
    target = psycopg.conninfo.conninfo_to_dict(admin_url)
    proxy = FaultProxy(str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432))
    env = {**os.environ, "DATABASE_URL": proxy.url(admin_url)}
    env.pop("AWS_ENDPOINT_URL", None)
    port = free_port()
    log_path = tmp_path_factory.mktemp("start-api-faults") / "stderr.log"
    logs = log_path.open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "incident_loop_dev.cli", "local", "start-api", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=logs, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != f"listening on http://127.0.0.1:{port}":
        proc.kill()
        logs.seek(0)
        pytest.fail(f"start-api did not start (first line {line!r}); stderr:\n{logs.read()[-4000:]}", pytrace=False)
    try:
        with psycopg.connect(admin_url, autocommit=True, row_factory=dict_row) as admin:
            yield Proxied(LocalApi(f"http://127.0.0.1:{port}", admin_url, env, log_path), proxy, admin)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        proxy.close()
        logs.close()


def _unavailable(answer: Answer, seconds: float) -> None:
    note(answer=answer.status, seconds=round(seconds, 3))
    assert answer.status == 503, answer.body
    assert "retry-after" in {name.lower() for name in answer.headers}, answer.headers
    assert seconds < BOUND_S, f"answered after {seconds:.1f}s"


def test_database_down_post_and_health_answer_503_and_the_retry_stores_everything_once(proxied: Proxied) -> None:
    expected, tenant = proxied.fault_free(), f"t-{uuid.uuid4().hex[:8]}"
    proxied.proxy.down()
    try:
        answer, seconds = proxied.report(tenant)
        health, health_s = timed(lambda: proxied.api.send("GET", "/health"))
    finally:
        proxied.proxy.restore()
    _unavailable(answer, seconds)
    assert health.status == 503 and health_s < BOUND_S, health.body
    assert health.body["status"] == "unavailable" and health.body["database"].startswith("unavailable")
    assert proxied.report(tenant)[0].status == 202
    proxied.api.drained()
    assert tenant_rows(proxied.admin, tenant) == expected
    assert proxied.api.send("GET", "/health").status == 200


def test_database_black_holed_post_answers_503_within_the_bound(proxied: Proxied) -> None:
    expected, tenant = proxied.fault_free(), f"t-{uuid.uuid4().hex[:8]}"
    proxied.proxy.black_hole()
    try:
        answer, seconds = proxied.report(tenant)
    finally:
        proxied.proxy.restore()
    _unavailable(answer, seconds)
    assert proxied.report(tenant)[0].status == 202
    proxied.api.drained()
    assert tenant_rows(proxied.admin, tenant) == expected


def test_table_locked_post_answers_503_within_the_bound(proxied: Proxied) -> None:
    expected, tenant = proxied.fault_free(), f"t-{uuid.uuid4().hex[:8]}"
    with locked(proxied.api.admin_url, "incidents"):
        answer, seconds = proxied.report(tenant)
    _unavailable(answer, seconds)
    assert proxied.report(tenant)[0].status == 202
    proxied.api.drained()
    assert tenant_rows(proxied.admin, tenant) == expected


def test_backends_killed_between_requests_the_next_request_reconnects(proxied: Proxied) -> None:
    expected, tenant = proxied.fault_free(), f"t-{uuid.uuid4().hex[:8]}"
    assert kill_function_backends(proxied.admin) >= 1
    answer, seconds = proxied.report(tenant)
    note(answer=answer.status, seconds=round(seconds, 3))
    assert answer.status == 202 and seconds < BOUND_S, answer.body
    proxied.api.drained()
    assert tenant_rows(proxied.admin, tenant) == expected
