"""`incident-loop workflow run FILE` and `workflow replay RUN_ID`, as a user runs them (subprocesses, DATABASE_URL).

No external service is configured, so the commands start the fake Slack, Voyage and webhook receivers
themselves; the run's JSON reports what reached them, the replay's how many calls left the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIVE_STEPS = ROOT / "events" / "workflows" / "five_step.json"
pytestmark = pytest.mark.e2e


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", "workflow", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def env(create_database: Any) -> dict[str, str]:
    environment = {**os.environ, "DATABASE_URL": create_database()}
    for name in ("AWS_ENDPOINT_URL", "SLACK_BASE_URL", "VOYAGE_BASE_URL", "WORKFLOW_WEBHOOK_URL"):
        environment.pop(name, None)
    return environment


@pytest.fixture(scope="module")
def run(env: dict[str, str]) -> dict[str, Any]:
    done = _cli(env, "run", str(FIVE_STEPS), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))  # stdout is the report alone


def test_workflow_run_prints_the_run_its_status_and_ops_and_each_effect_reached_its_receiver_once(
        run: dict[str, Any]) -> None:
    assert run["workflow_run_id"].startswith("wf_") and run["status"] == "completed"
    assert [(op["op_index"], op["op_type"], op["status"]) for op in run["ops"]] == [
        (0, "kv_store", "completed"), (1, "kv_store", "completed"), (2, "voyage_embed", "completed"),
        (3, "webhook_send", "completed"), (4, "slack_send", "completed")]
    assert run["receivers"] == {"slack_messages": 1, "voyage_requests": 1, "voyage_inputs": 1,
                                "webhook_deliveries": 1, "webhook_effects": 1, "webhook_rejected": 0}
    assert run["dead_letters"] == 0


def test_workflow_replay_verifies_the_run_with_no_live_call(env: dict[str, str], run: dict[str, Any]) -> None:
    done = _cli(env, "replay", run["workflow_run_id"], "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert (report["status"], report["live_calls"], report["first_mismatch_op_index"]) == ("verified", 0, None)
    assert (report["ops_verified"], report["ops_failed"], report["ops_skipped"]) == (4, 0, 1)


def test_workflow_replay_of_a_tampered_run_prints_mismatch_at_the_op_and_exits_non_zero(
        env: dict[str, str], run: dict[str, Any]) -> None:
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as admin:
        admin.execute("UPDATE m11_audit.ops SET result = jsonb_set(result, '{dimensions}', '1024')"
                      " WHERE workflow_run_id = %(id)s AND op_index = 2", {"id": run["workflow_run_id"]})

    done = _cli(env, "replay", run["workflow_run_id"])

    assert done.returncode == 1
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line and not
                 line.startswith(("INFO", "CRITICAL")))
    assert (lines["status"], lines["first_mismatch_op_index"], lines["live_calls"]) == ("mismatch", "2", "0")
    assert "CRITICAL: replay of workflow run" in done.stdout
