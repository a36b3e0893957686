"""The failure catalog's functions from the build: persist (SQS), replay of parked failures, nightly retention."""

from __future__ import annotations

import uuid

import pytest
from artifact_support import FAILURE, Artifact

RETENTION_DAYS = 90  # the template's FailureRetentionDays default


@pytest.mark.invokes("FailurePersistFunction")
def test_failure_persist_matches_the_failure_against_the_catalog_and_stores_it(cloud: Artifact) -> None:
    answer = cloud.invoke("FailurePersistFunction", cloud.event("failure_persist_rate_limited.json"))

    assert answer == {"batchItemFailures": []}
    [row] = cloud.rows("SELECT tenant_id, error_code, catalog_entry_id, category, skill_id, step_index"
                       " FROM failure_matches WHERE run_id = 'run-5e8f21'")
    assert row == {"tenant_id": cloud.tenant, "error_code": "RateLimitError", "catalog_entry_id": "RATE_LIMITED@v1",
                   "category": "RATE_LIMIT", "skill_id": "llm_invoke", "step_index": 2}
    assert cloud.take("FailureRetryQueue") == []  # stored at once, not parked for a replay


@pytest.mark.invokes("FailureReplayFunction")
def test_failure_replay_lands_a_parked_failure_once(cloud: Artifact) -> None:
    failure_id = str(uuid.uuid4())
    event = cloud.event("failure_replay_parked.json", {FAILURE: failure_id})

    first = cloud.invoke("FailureReplayFunction", event)
    again = cloud.invoke("FailureReplayFunction", event)  # SQS delivers at least once

    assert first == again == {"batchItemFailures": []}
    [row] = cloud.rows("SELECT tenant_id, run_id, catalog_entry_id, recovery_mode FROM failure_matches"
                       " WHERE id = %(id)s", id=failure_id)
    assert row == {"tenant_id": cloud.tenant, "run_id": "run-7f3a9c", "catalog_entry_id": "SKILL_TIMEOUT@v1",
                   "recovery_mode": "retry_with_backoff"}


def _failure(cloud: Artifact, age_days: int) -> str:
    failure_id = str(uuid.uuid4())
    cloud.admin.execute(
        "INSERT INTO failure_matches (id, run_id, tenant_id, error_code, created_at) VALUES (%(id)s, 'run-retention',"
        " %(tenant)s, 'SkillTimeoutError', (now() AT TIME ZONE 'utc') - make_interval(days => %(age)s))",
        {"id": failure_id, "tenant": cloud.tenant, "age": age_days})
    return failure_id


@pytest.mark.invokes("FailureRetentionFunction")
def test_failure_retention_deletes_failures_past_the_retention_age_and_returns_its_counts(cloud: Artifact) -> None:
    expired, kept = _failure(cloud, RETENTION_DAYS + 30), _failure(cloud, RETENTION_DAYS - 1)
    [due] = cloud.rows("SELECT count(*) AS n FROM failure_matches WHERE created_at"
                       " < (now() AT TIME ZONE 'utc') - make_interval(days => %(days)s)", days=RETENTION_DAYS)

    answer = cloud.invoke("FailureRetentionFunction", cloud.event("failure_retention_nightly.json"))

    assert due["n"] >= 1
    assert answer == {"deleted": due["n"], "batches": 1, "complete": True}
    remaining = {row["id"] for row in cloud.rows("SELECT id::text FROM failure_matches WHERE id IN (%(a)s, %(b)s)",
                                                 a=expired, b=kept)}
    assert remaining == {kept}
