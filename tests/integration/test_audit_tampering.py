"""Tampering with the audit that POST /workflows/{id}/replay must report as a mismatch, and a run that never
started, which it must not.

Runs through the real functions (PostgreSQL as the function role, moto's server, the fake Slack receiver) as
tests/integration/test_workflows.py does. The tampering is done as the owner (admin), whom the ops trigger lets
correct a row because the replay verifier is what notices (migrations/0010_m11_audit.sql).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from incident_loop_dev.workflow import LocalWorkflows, local_workflows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workflows(admin_db_url: str) -> Iterator[LocalWorkflows]:
    with local_workflows(ROOT, admin_db_url, f"tenant-tamper-{uuid.uuid4().hex[:8]}") as local:
        yield local


@pytest.fixture
def admin(admin_db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(admin_db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _kv_run(workflows: LocalWorkflows, n: int = 3) -> str:
    ns = f"rv{uuid.uuid4().hex[:8]}"
    steps = [{"skill": "kv_store", "args": {"op": "set", "namespace": ns, "key": f"k{i}", "value": {"i": i}}}
             for i in range(n)]
    run = workflows.run({"steps": steps})
    assert run["status"] == "completed", run
    return str(run["workflow_run_id"])


def _replay(workflows: LocalWorkflows, run_id: str) -> dict[str, Any]:
    status, body = workflows.app.request("POST", f"/workflows/{run_id}/replay", workflows.tenant)
    assert status == 200, body
    return dict(body)


def test_an_untouched_run_verifies(workflows: LocalWorkflows) -> None:
    assert _replay(workflows, _kv_run(workflows))["status"] == "verified"


def test_a_completed_run_whose_op_was_made_failed_and_whose_tail_was_deleted_is_a_mismatch(
        workflows: LocalWorkflows, admin: Any) -> None:
    """Op 1 of a completed 3-op run rewritten to `failed` and op 2 deleted: the steps after a failed op were
    skipped as never reached, and the run's own status was never compared with its ops."""
    run_id = _kv_run(workflows)
    admin.execute("UPDATE m11_audit.ops SET status = 'failed', result = NULL, result_hash = NULL,"
                  " error_code = 'x', error_message = 'x' WHERE workflow_run_id = %(r)s AND op_index = 1",
                  {"r": run_id})
    admin.execute("DELETE FROM m11_audit.ops WHERE workflow_run_id = %(r)s AND op_index = 2", {"r": run_id})
    run = admin.execute("SELECT status FROM m11_audit.workflow_runs WHERE id = %(r)s", {"r": run_id}).fetchone()
    assert run == {"status": "completed"}  # the run still says every op completed

    report = _replay(workflows, run_id)

    assert report["status"] == "mismatch" and report["mismatches"][0]["check"] in ("result_hash", "run_status")
    assert "run_status" in {m["check"] for m in report["mismatches"]}


def test_a_completed_op_whose_result_and_hash_were_cleared_is_a_mismatch(workflows: LocalWorkflows, admin: Any) -> None:
    run_id = _kv_run(workflows)
    admin.execute("UPDATE m11_audit.ops SET result = NULL, result_hash = NULL"
                  " WHERE workflow_run_id = %(r)s AND op_index = 2", {"r": run_id})

    report = _replay(workflows, run_id)

    assert report["status"] == "mismatch", report


def test_a_rewritten_result_of_a_skill_that_is_not_deterministic_is_a_mismatch(
        workflows: LocalWorkflows, admin: Any) -> None:
    """slack_send is not deterministic, but its result's hash is recorded like any other: it is compared."""
    run = workflows.run({"steps": [{"skill": "slack_send", "args": {"channel": "#incidents", "text": "hello"}}]})
    assert run["status"] == "completed", run
    run_id = run["workflow_run_id"]
    before = admin.execute("SELECT result, result_hash FROM m11_audit.ops WHERE workflow_run_id = %(r)s",
                           {"r": run_id}).fetchone()
    assert before["result_hash"] is not None
    admin.execute("UPDATE m11_audit.ops SET result = jsonb_set(result, '{channel}', '\"#forged\"')"
                  " WHERE workflow_run_id = %(r)s AND op_index = 0", {"r": run_id})

    report = _replay(workflows, run_id)

    assert report["status"] == "mismatch", report


def test_a_run_that_never_started_replays_as_verified_with_every_step_skipped(
        workflows: LocalWorkflows, admin: Any) -> None:
    """The relay fails a run that never started (never_started, no ops): nothing to verify, nothing wrong."""
    run_id = workflows.submit({"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "never"}}]})
    admin.execute("UPDATE m11_audit.workflow_runs SET created_at = now() - interval '2 hours',"
                  " updated_at = now() - interval '1 hour' WHERE id = %(r)s", {"r": run_id})
    claimed = admin.execute("SELECT * FROM m11_audit.claim_stale_runs(60, 0, 600, 1000)").fetchall()
    assert {"workflow_run_id": run_id, "abandoned": True} in [
        {"workflow_run_id": c["workflow_run_id"], "abandoned": c["abandoned"]} for c in claimed]
    workflows.app.drain()  # the original message: the runner sees a finished run and does nothing
    status, view = workflows.app.request("GET", f"/workflows/{run_id}", workflows.tenant)
    assert (view["status"], view["error_code"], view["ops"]) == ("failed", "never_started", [])

    report = _replay(workflows, run_id)

    assert (report["status"], report["severity"], report["ops_skipped"]) == ("verified", "INFO", 1), report
