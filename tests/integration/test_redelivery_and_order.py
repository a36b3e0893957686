"""At-least-once delivery, out of order: a redelivered failure is stored once; a stage waits for its predecessor.

A loop never un-completes.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fault_support import failed_records, invoke_batch

from incident_loop.db import transaction
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.failures import FailureIn
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.schemas.loop.events import LoopEvent
from incident_loop.stores.loop_store import get_trace, record_stage
from incident_loop_dev.faults import tenant_rows
from incident_loop_dev.local.runner import sqs_record


def _failure(tenant: str, **extra: Any) -> str:
    return FailureIn(run_id="run-1", tenant_id=tenant, error_code="E_RUNTIME",
                     error_message="Skill web_search timed out after 30s", **extra).model_dump_json()


def _record(app: Any, queue: str, body: str) -> dict[str, Any]:
    """One SQS record of `queue` carrying `body`, as Lambda's event source would deliver it."""
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": body,
               "MD5OfBody": hashlib.md5(body.encode()).hexdigest(), "Attributes": {}}
    return sqs_record(message, app.queue_arns[queue])


def test_the_same_failure_message_delivered_six_times_is_stored_once(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    event = {"Records": [_record(local_app, "FailureQueue", _failure(tenant))]}
    for _ in range(6):  # SQS redelivers the very same message (same message id)
        assert failed_records(invoke_batch(local_app, "FailurePersistFunction", event)) == []
    assert tenant_rows(admin_conn, tenant)["failure_matches"] == 1


def test_the_same_failure_sent_six_times_is_stored_once(local_app: Any, tenant: str, admin_conn: Any) -> None:
    for _ in range(6):  # a producer that retried its SendMessage: six messages, one failure
        local_app.send("FailureQueue", _failure(tenant))
    local_app.drain()
    assert tenant_rows(admin_conn, tenant)["failure_matches"] == 1


def test_different_failures_of_one_run_are_each_stored(local_app: Any, tenant: str, admin_conn: Any) -> None:
    for step in range(3):
        local_app.send("FailureQueue", _failure(tenant, step_index=step))
    local_app.send("FailureQueue", _failure(tenant, failure_id=uuid.uuid4()))  # the producer's own id wins
    local_app.drain()
    assert tenant_rows(admin_conn, tenant)["failure_matches"] == 4


def _complete_loop(app: Any, tenant: str) -> tuple[str, str]:
    """Run one incident's loop to the end (its checkpoint approved); (incident_id, policy_id)."""
    status, body = app.request("POST", "/incidents", tenant, {
        "agent_id": "agent-1", "run_id": "run-1", "error_type": "SkillTimeoutError", "skill_id": "web_search",
        "severity": "high", "error_message": "Skill web_search timed out after 30s calling https://x.example/q"})
    assert status == 202, body
    app.drain()
    _, pending = app.request("GET", "/checkpoints", tenant)
    for cp in pending["checkpoints"]:
        app.request("POST", f"/checkpoints/{cp['checkpoint_id']}/resolve", tenant,
                    {"resolution": "approve", "resolved_by": "op"})
    app.drain()
    _, policies = app.request("GET", "/policies", tenant)
    loop = app.request("GET", f"/loops/{body['incident_id']}", tenant)[1]
    assert loop["is_complete"] is True, loop
    return str(body["incident_id"]), str(policies["policies"][0]["policy_id"])


def test_a_stage_whose_predecessors_have_not_been_recorded_fails_and_waits(
    local_app: Any, tenant: str, admin_conn: Any
) -> None:
    _, policy_id = _complete_loop(local_app, tenant)
    status, body = local_app.request("POST", "/incidents", tenant, {
        "agent_id": "agent-2", "run_id": "run-2", "error_type": "RateLimitError",
        "error_message": "429 Too Many Requests: rate limit exceeded"})
    assert status == 202, body
    early = Envelope(incident_id=body["incident_id"], tenant_id=tenant, loop_id=body["loop_id"],
                     stage=LoopStage.ROUTING_ADJUSTED, correlation_id=body["incident_id"],
                     payload={"policy_id": policy_id})
    before = tenant_rows(admin_conn, tenant)
    record = _record(local_app, "RoutingQueue", early.model_dump_json())
    failures = failed_records(invoke_batch(local_app, "AdjustRoutingFunction", {"Records": [record]}))
    assert len(failures) == 1 and failures[0].startswith("NotReady"), failures  # redelivered, later
    assert tenant_rows(admin_conn, tenant) == before
    loop = local_app.request("GET", f"/loops/{body['incident_id']}", tenant)[1]
    assert loop["is_complete"] is False and loop["stages_completed"] == ["incident_created"], loop


def test_a_complete_loop_never_goes_back_to_incomplete(local_app: Any, tenant: str) -> None:
    incident_id, _ = _complete_loop(local_app, tenant)
    with transaction(tenant_id=tenant) as conn:
        completed_at = get_trace(conn, tenant, incident_id)["completed_at"]
        late = LoopEvent.create(incident_id=incident_id, tenant_id=tenant, stage=LoopStage.RECOVERY_SUGGESTED,
                                details={"late": True})
        assert record_stage(conn, late, key="recovery_suggested:late") is True
        trace = get_trace(conn, tenant, incident_id)
    assert trace["is_complete"] is True and trace["completed_at"] == completed_at
