"""Faults: PostgreSQL refused, black-holed, locked or killed, and a queue missing, on the real handlers.

Every case asserts a bounded answer (503 with Retry-After from the API, batchItemFailures from a
consumer), then restores the fault, redelivers, and compares every table of the tenant with a
fault-free run of the same incidents: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fault_support import database_at, failed_records, queue_deleted, reconfigure

from incident_loop import db
from incident_loop.schemas.failures import FailureIn
from incident_loop_dev.faults import (
    BOUND_S,
    LockWatcher,
    black_hole,
    kill_function_backends,
    locked,
    note,
    refused_url,
    tenant_rows,
    timed,
)


def incident(n: int) -> dict[str, Any]:
    return {"agent_id": "agent-1", "run_id": f"run-{n}", "error_type": "SkillTimeoutError", "skill_id": "web_search",
            "severity": "high",
            "error_message": f"Skill web_search timed out after {10 * n}s calling https://api.example.com/q?id={n}"}


def post(app: Any, tenant: str, n: int) -> tuple[tuple[int, dict[str, str], Any], float]:
    """POST /incidents for incident n: ((status, headers, body), seconds)."""
    return timed(lambda: app.respond("POST", "/incidents", tenant, incident(n)))


def report(app: Any, tenant: str, *ns: int) -> None:
    for n in ns:
        (status, _, body), _ = post(app, tenant, n)
        assert status == 202, body


def assert_unavailable(answer: tuple[int, dict[str, str], Any], seconds: float) -> None:
    """503 with Retry-After, within the bound."""
    status, headers, body = answer
    note(answer=status, seconds=round(seconds, 3))
    assert status == 503, body
    assert "retry-after" in {name.lower() for name in headers}, headers
    assert seconds < BOUND_S, f"answered after {seconds:.1f}s"


def deliver(app: Any, queue: str) -> tuple[list[str], float]:
    """One batch of `queue` to its consumer: (the failed message ids, seconds)."""
    response, seconds = timed(lambda: app.deliver(queue))
    failures = failed_records(response)
    note(answer=f"{len(failures)} records failed", seconds=round(seconds, 3))
    return failures, seconds


def fault_free(app: Any, admin_conn: Any, *ns: int) -> dict[str, int]:
    """The rows a fault-free run of incidents `ns` leaves, in a tenant of its own."""
    tenant = f"baseline-{uuid.uuid4().hex[:8]}"
    report(app, tenant, *ns)
    app.drain()
    return tenant_rows(admin_conn, tenant)


# --------------------------------------------------------------------------- refused


def test_refused_the_api_answers_503_and_the_retry_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    with database_at(refused_url()):
        answer, seconds = post(local_app, tenant, 1)
    assert_unavailable(answer, seconds)
    report(local_app, tenant, 1)  # the client's retry
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_refused_a_consumer_fails_its_batch_and_the_redelivery_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2, 3)
    report(local_app, tenant, 1, 2, 3)
    with database_at(refused_url()):
        failed, seconds = deliver(local_app, "PatternQueue")
    assert len(failed) == 3 and seconds < BOUND_S
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


# --------------------------------------------------------------------------- black-holed


def test_black_holed_the_api_answers_503_within_the_bound(local_app: Any, tenant: str, admin_conn: Any) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    with black_hole() as url, database_at(url):
        answer, seconds = post(local_app, tenant, 1)
    assert_unavailable(answer, seconds)
    report(local_app, tenant, 1)
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_black_holed_a_consumer_fails_its_whole_batch_within_the_bound(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2, 3)
    report(local_app, tenant, 1, 2, 3)
    with black_hole() as url, database_at(url):
        failed, seconds = deliver(local_app, "PatternQueue")
    assert len(failed) == 3 and seconds < BOUND_S, f"{len(failed)} failed after {seconds:.1f}s"
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


# --------------------------------------------------------------------------- locked


def test_locked_a_read_answers_503_within_the_bound(local_app: Any, tenant: str, admin_db_url: str) -> None:
    with locked(admin_db_url, "failure_matches"):
        answer, seconds = timed(lambda: local_app.respond("GET", "/failures", tenant))
    assert_unavailable(answer, seconds)
    assert local_app.request("GET", "/failures", tenant)[0] == 200


def test_locked_post_incidents_answers_503_and_the_retry_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    with locked(admin_db_url, "incidents"):
        answer, seconds = post(local_app, tenant, 1)
    assert_unavailable(answer, seconds)
    report(local_app, tenant, 1)
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_locked_a_consumer_fails_its_batch_within_the_bound_and_the_redelivery_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2, 3)
    report(local_app, tenant, 1, 2, 3)
    with locked(admin_db_url, "failure_patterns"):
        failed, seconds = deliver(local_app, "PatternQueue")
    assert len(failed) == 3 and seconds < BOUND_S, f"{len(failed)} failed after {seconds:.1f}s"
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_the_container_connection_carries_the_statement_and_lock_bounds(loop_env: str) -> None:
    conn = db.get_connection()
    assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "5s"
    assert conn.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "2s"


# --------------------------------------------------------------------------- killed


def test_killed_between_invocations_the_next_request_reconnects_and_succeeds(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2)
    report(local_app, tenant, 1)  # the container's connection is warm
    assert kill_function_backends(admin_conn) >= 1
    (status, _, body), seconds = post(local_app, tenant, 2)
    note(answer=status, seconds=round(seconds, 3))
    assert status == 202 and seconds < BOUND_S, body
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_killed_between_batches_the_consumer_reconnects_and_succeeds(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2, 3)
    report(local_app, tenant, 1, 2, 3)
    assert kill_function_backends(admin_conn) >= 1
    failed, seconds = deliver(local_app, "PatternQueue")
    assert failed == [] and seconds < BOUND_S
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_killed_mid_request_the_api_answers_503_and_the_retry_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "15000")  # the kill, not the lock bound, ends the wait
    reconfigure()
    with locked(admin_db_url, "incidents"):
        watcher = LockWatcher(admin_db_url)
        answer, seconds = post(local_app, tenant, 1)
        watcher.join()
    assert watcher.killed == 1
    assert_unavailable(answer, seconds)
    report(local_app, tenant, 1)
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_killed_mid_batch_the_consumer_fails_the_batch_and_the_redelivery_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = fault_free(local_app, admin_conn, 1, 2, 3)
    report(local_app, tenant, 1, 2, 3)
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "15000")
    reconfigure()
    with locked(admin_db_url, "failure_patterns"):
        watcher = LockWatcher(admin_db_url)
        failed, seconds = deliver(local_app, "PatternQueue")
        watcher.join()
    assert watcher.killed == 1
    assert len(failed) == 3 and seconds < BOUND_S, f"{len(failed)} failed after {seconds:.1f}s"
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


# --------------------------------------------------------------------------- queue missing, and loss


def test_queue_missing_at_a_hand_off_fails_the_record_and_the_redelivery_stores_everything_once(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    report(local_app, tenant, 1)
    with queue_deleted(local_app, "RecoveryQueue"):
        failed, seconds = deliver(local_app, "PatternQueue")
    assert len(failed) == 1 and seconds < BOUND_S
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def _failure(tenant: str) -> str:
    return FailureIn(run_id="run-9", tenant_id=tenant, error_code="E_RUNTIME",
                     error_message="Skill web_search timed out after 30s").model_dump_json()


def test_a_failure_neither_written_nor_parked_fails_back_to_sqs_and_lands_once(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    local_app.send("FailureQueue", _failure(tenant))
    with database_at(refused_url()), queue_deleted(local_app, "FailureRetryQueue"):
        failed, seconds = deliver(local_app, "FailureQueue")
    assert len(failed) == 1 and seconds < BOUND_S  # never acknowledged: SQS redelivers it
    local_app.drain()
    assert tenant_rows(admin_conn, tenant)["failure_matches"] == 1
    assert local_app.dlq_messages("FailureQueue") == []


def test_post_incidents_whose_failure_can_be_neither_written_nor_parked_answers_503_and_the_retry_lands_it(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    with locked(admin_db_url, "failure_matches"), queue_deleted(local_app, "FailureRetryQueue"):
        answer, seconds = post(local_app, tenant, 1)
    assert_unavailable(answer, seconds)
    (status, _, body), _ = post(local_app, tenant, 1)  # the client's retry: the incident is stored already
    assert status == 202 and body["duplicate"] is True, body
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


def test_an_incident_from_the_queue_whose_failure_can_be_neither_written_nor_parked_is_redelivered(
    local_app: Any, tenant: str, admin_conn: Any, admin_db_url: str
) -> None:
    expected = fault_free(local_app, admin_conn, 1)
    local_app.send("IncidentQueue", json.dumps({**incident(1), "tenant_id": tenant}))
    with locked(admin_db_url, "failure_matches"), queue_deleted(local_app, "FailureRetryQueue"):
        failed, seconds = deliver(local_app, "IncidentQueue")
    assert len(failed) == 1 and seconds < BOUND_S
    local_app.drain()
    assert tenant_rows(admin_conn, tenant) == expected


# --------------------------------------------------------------------------- /health


def test_health_answers_503_with_the_detail_when_the_database_is_down(local_app: Any, tenant: str) -> None:
    with database_at(refused_url()):
        (status, _, body), seconds = timed(lambda: local_app.respond("GET", "/health", tenant))
    note(answer=status, seconds=round(seconds, 3))
    assert status == 503 and seconds < BOUND_S, body
    assert body["status"] == "unavailable" and body["database"].startswith("unavailable"), body
    assert set(body["breakers"]) == {"costsim-v2", "catalog-persist"}


def test_health_answers_200_when_its_dependencies_answer(local_app: Any, tenant: str) -> None:
    status, body = local_app.request("GET", "/health", tenant)
    assert status == 200 and body["status"] == "ok" and body["database"] == "ok", body
