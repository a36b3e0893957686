"""The demo story end to end: moto's server over real HTTP, a real PostgreSQL, every message twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incident_loop import db
from incident_loop_dev.local.demo import Story, StoryRunner
from incident_loop_dev.local.runner import LocalApp, reset_container_caches
from incident_loop_dev.local.services import moto_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture
def http_app(loop_env: str) -> Iterator[LocalApp]:
    with moto_server() as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        app = LocalApp(ROOT, endpoint, loop_env)
        app.provision()
        yield app
        for name in app.exported:
            os.environ.pop(name, None)
    reset_container_caches()


@pytest.fixture
def story(http_app: LocalApp) -> Story:
    return StoryRunner(http_app, f"tenant-e2e-{uuid.uuid4().hex[:6]}", ROOT / "events", duplicate=True).run()


def rows(table: str, tenant: str) -> int:
    with db.transaction(tenant_id=tenant) as conn:
        found = conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %(t)s", {"t": tenant})
        return int(found.fetchone()["n"])


def test_story_row_counts_are_exact_with_every_message_delivered_twice(story: Story) -> None:
    tenant = story.tenant_id
    assert {t: rows(t, tenant) for t in (
        "incidents", "failure_patterns", "recovery_candidates", "policy_rules", "routing_adjustments",
        "human_checkpoints", "prevention_records", "loop_traces", "failure_matches",
    )} == {
        "incidents": 5,            # four timeouts and the rate limit from the ingest queue
        "failure_patterns": 2,     # one per kind
        "recovery_candidates": 4,  # three timeouts and the rate limit; the fourth timeout was prevented
        "policy_rules": 1,         # the rate limit still waits for approval
        "routing_adjustments": 1,  # one per (policy, agent)
        "human_checkpoints": 3,    # timeouts 1 and 2, and the rate limit
        "prevention_records": 1,
        "loop_traces": 5,
        "failure_matches": 5,      # every incident also lands in the failure catalog, once
    }
    with db.transaction(tenant_id=tenant) as conn:
        events = conn.execute(
            "SELECT count(*) AS n, count(DISTINCT event_key) AS k FROM loop_events WHERE tenant_id = %(t)s",
            {"t": tenant}).fetchone()
    assert events["n"] == events["k"]


def test_story_confidences_pause_resume_and_prevention(story: Story) -> None:
    first_blocked, first_done, second, third, fourth = (s.status for s in story.steps)
    assert first_blocked["is_blocked"] and first_blocked["recovery_suggestion"]["confidence"] == 0.7
    assert first_blocked["pattern_match_result"]["is_new_pattern"] is True
    assert len(first_blocked["pending_checkpoints"]) == 1
    assert first_done["is_complete"] and not first_done["is_blocked"]
    assert first_done["policy_rule"]["mode"] == "shadow"
    assert second["recovery_suggestion"]["confidence"] == 0.8 and second["is_complete"]
    assert third["recovery_suggestion"]["confidence"] == 0.9
    assert third["recovery_suggestion"]["auto_applicable"] is True
    assert third["pattern_match_result"]["confidence"] >= 0.75
    assert fourth["failure_state"] == "prevented"
    assert [p["mode"] for p in story.policies] == ["active"]
    assert story.routing["active_adjustments"] == 1
    assert story.graduation["graduated"] is True
    assert story.dead_letters and not any(story.dead_letters.values())


def test_story_console_display_tells_the_story(story: Story) -> None:
    assert "BLOCKED" in story.steps[0].console
    assert "COMPLETE" in story.steps[1].console
    assert "PREVENTED" in story.steps[4].console


def test_make_run_command_exits_zero_and_prints_every_loop(admin_db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": admin_db_url}  # it migrates as the admin; its functions do not
    done = subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", "run", "--json"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    story: dict[str, Any] = json.loads(done.stdout)
    assert len(story["loops"]) == 5
    assert story["graduation"]["passed"] == 3
