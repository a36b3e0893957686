"""The workflow relay (workflows/relay.py, migration 0013): a run committed whose message SQS refused is started
later, at most a bounded number of times, and a run never started is failed as such; nothing else is touched.

On PostgreSQL as the function role (row-level security applies: the relay spans tenants through the owner's
function), and, end to end, through the real functions on moto's server with the fake Slack and webhook receivers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fakes.emf import flushed, values
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from incident_loop import migrate
from incident_loop.aws import SQS_CONFIG, worst_case_s
from incident_loop.db import DatabaseUnavailable
from incident_loop.schemas.workflows import WorkflowMessage
from incident_loop.stores.queues import QueueUnavailable, QueueUnconfigured
from incident_loop.stores.workflow_queue import SqsWorkflowQueue
from incident_loop.workflows import relay
from incident_loop.workflows.relay import relay_stale_runs
from incident_loop_dev.local.cloud import scheduled_event
from incident_loop_dev.local.services import function_role_url
from incident_loop_dev.workflow import LocalWorkflows, local_workflows

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = json.loads(json.loads((ROOT / "events" / "ingest_api_timeout_1.json").read_text())["body"])
STEPS = {"steps": [{"skill": "kv_store", "args": {"op": "get", "key": "k"}}]}


class _Queue:
    """Refuses every message (refuse), or the first `refuse_first` of them."""

    def __init__(self, refuse: bool = False, refuse_first: int = 0) -> None:
        self.sent: list[WorkflowMessage] = []
        self.refuse, self.refuse_first = refuse, refuse_first

    def send(self, message: WorkflowMessage) -> None:
        if self.refuse or self.refuse_first:
            self.refuse_first = max(self.refuse_first - 1, 0)
            raise QueueUnavailable("queue refused the message (ServiceUnavailable)")
        self.sent.append(message)


@pytest.fixture
def admin(admin_db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(admin_db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _run(admin: psycopg.Connection[dict[str, Any]], tenant: str, status: str = "queued", *, age_s: int = 0,
         requeues: int = 0) -> str:
    run_id = f"wf_{uuid.uuid4().hex}"
    admin.execute(
        "INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, status, requeues, created_at, updated_at)"
        " VALUES (%(id)s, %(t)s, %(d)s, %(s)s, %(r)s, now() - make_interval(secs => %(age)s),"
        " now() - make_interval(secs => %(age)s))",
        {"id": run_id, "t": tenant, "d": Jsonb(STEPS), "s": status, "r": requeues, "age": age_s})
    return run_id


def _state(admin: psycopg.Connection[dict[str, Any]], run_id: str) -> dict[str, Any]:
    row = admin.execute("SELECT status, requeues, error_code FROM m11_audit.workflow_runs WHERE id = %s",
                        (run_id,)).fetchone()
    assert row is not None
    return dict(row)


def _age(admin: psycopg.Connection[dict[str, Any]], run_id: str, seconds: int) -> None:
    admin.execute("UPDATE m11_audit.workflow_runs SET updated_at = now() - make_interval(secs => %s) WHERE id = %s",
                  (seconds, run_id))


def test_only_runs_queued_and_untouched_past_the_age_get_their_message_again_whatever_their_tenant(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]]) -> None:
    mine, theirs = f"tenant-rl-{uuid.uuid4().hex[:6]}", f"tenant-rl-{uuid.uuid4().hex[:6]}"
    lost = [_run(admin, mine, age_s=900), _run(admin, theirs, age_s=1200)]
    untouched = {
        _run(admin, mine, age_s=60): ("queued", 0),  # young: its message may still be on its way
        _run(admin, mine, "running", age_s=900): ("running", 0),
        _run(admin, mine, "completed", age_s=900): ("completed", 0),
        _run(admin, theirs, "failed", age_s=900): ("failed", 0),
    }
    queue = _Queue()

    counts = relay_stale_runs(queue=queue, conn=conn)  # as the function role: RLS would hide both tenants

    relayed = {(m.workflow_run_id, m.tenant_id) for m in queue.sent}
    assert {(lost[0], mine), (lost[1], theirs)} <= relayed
    assert not relayed & {(run_id, t) for run_id in untouched for t in (mine, theirs)}
    assert counts["requeued"] >= 2 and counts["not_sent"] == 0
    assert [_state(admin, run_id)["requeues"] for run_id in lost] == [1, 1]
    for run_id, (status, requeues) in untouched.items():
        assert (_state(admin, run_id)["status"], _state(admin, run_id)["requeues"]) == (status, requeues)
    assert all(m.segment == 0 and m.correlation_id == m.workflow_run_id and m.relayed_at > 0 for m in queue.sent)

    again = _Queue()
    relay_stale_runs(queue=again, conn=conn)  # at once: claimed a moment ago, untouched for no time yet
    assert not {m.workflow_run_id for m in again.sent} & set(lost)


SIX_HOURS = 6 * 3600  # WORKFLOW_RELAY_GIVE_UP_S: longer than a message lives on WorkflowQueue


def test_a_run_not_started_while_a_message_of_it_may_still_arrive_is_not_given_up(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]]) -> None:
    run_id = _run(admin, f"tenant-rl-{uuid.uuid4().hex[:6]}", age_s=3600, requeues=3)  # made an hour ago
    _age(admin, run_id, 900)

    queue = _Queue()
    relay_stale_runs(queue=queue, conn=conn)

    assert run_id not in {m.workflow_run_id for m in queue.sent}  # its requeues are spent
    assert _state(admin, run_id) == {"status": "queued", "requeues": 3, "error_code": None}


def test_a_run_never_started_after_its_requeues_is_failed_and_sent_no_more(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]]) -> None:
    tenant = f"tenant-rl-{uuid.uuid4().hex[:6]}"
    run_id = _run(admin, tenant, age_s=SIX_HOURS + 60)
    for expected in (1, 2, 3):
        queue = _Queue()
        relay_stale_runs(queue=queue, conn=conn)
        assert run_id in {m.workflow_run_id for m in queue.sent}
        assert _state(admin, run_id) == {"status": "queued", "requeues": expected, "error_code": None}
        _age(admin, run_id, 900)  # and still nobody started it

    queue = _Queue()
    counts = relay_stale_runs(queue=queue, conn=conn)

    assert run_id not in {m.workflow_run_id for m in queue.sent} and counts["never_started"] >= 1
    assert _state(admin, run_id) == {"status": "failed", "requeues": 3, "error_code": "never_started"}
    message = admin.execute("SELECT error_message, completed_at FROM m11_audit.workflow_runs WHERE id = %s",
                            (run_id,)).fetchone()
    assert message is not None and message["completed_at"] is not None
    assert message["error_message"] == "not started within 21600 s; its message was sent again 3 times"


def test_runs_failed_as_never_started_are_counted_even_when_giving_back_the_unsent_claims_fails(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """WorkflowRunsNeverStartedAlarm: a run committed failed as never_started is counted whatever happens next in
    the invocation (the count came after giving back the unsent claims, which failed with the database)."""
    flushed(capsys)  # nothing left over from other tests
    tenant = f"tenant-rl-{uuid.uuid4().hex[:6]}"
    abandoned = _run(admin, tenant, age_s=SIX_HOURS + 60, requeues=3)
    _age(admin, abandoned, 900)
    _run(admin, tenant, age_s=900)  # stale: its resend is refused, so its claim is given back

    def release_fails(*args: Any, **kwargs: Any) -> int:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(relay, "release_claims", release_fails)
    with pytest.raises(DatabaseUnavailable):
        relay.relay_stale_runs(queue=_Queue(refuse=True), conn=conn)

    assert _state(admin, abandoned) == {"status": "failed", "requeues": 3, "error_code": "never_started"}
    # The function's @metrics.log_metrics flushes in a `finally`: what was added before the raise is sent.
    assert sum(values(flushed(capsys), "WorkflowRunsNeverStarted")) >= 1


def test_a_requeue_sqs_refuses_is_given_back_and_sent_by_the_next_relay(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]]) -> None:
    """Only a message sent counts as a requeue: counted at the claim, three relays that each met one refusal
    failed every run they claimed as never_started without sending one message again."""
    run_id = _run(admin, f"tenant-rl-{uuid.uuid4().hex[:6]}", age_s=900)

    counts = relay_stale_runs(queue=_Queue(refuse=True), conn=conn)

    assert counts["not_sent"] >= 1
    assert {k: _state(admin, run_id)[k] for k in ("status", "requeues")} == {"status": "queued", "requeues": 0}
    queue = _Queue()
    relay_stale_runs(queue=queue, conn=conn)  # at once: the claim given back is stale again
    assert run_id in {m.workflow_run_id for m in queue.sent}
    assert _state(admin, run_id)["requeues"] == 1


def test_runs_the_relay_could_not_send_are_never_given_up_unsent(
        conn: psycopg.Connection[Any], admin: psycopg.Connection[dict[str, Any]]) -> None:
    """Runs made long ago (past the give-up time), three relays each refused once by SQS: every run still gets
    its message before any is failed as never_started."""
    tenant = f"tenant-rl-{uuid.uuid4().hex[:6]}"
    runs = [_run(admin, tenant, age_s=7 * 3600) for _ in range(2)]
    sent: set[str] = set()
    for _ in range(3):
        queue = _Queue(refuse_first=1)
        relay_stale_runs(queue=queue, conn=conn)
        sent |= {m.workflow_run_id for m in queue.sent}
        for run_id in runs:
            _age(admin, run_id, 900)
    relay_stale_runs(queue=_Queue(), conn=conn)
    given_up = [r for r in runs if _state(admin, r)["error_code"] == "never_started"]
    assert set(given_up) <= sent


@pytest.fixture
def local(admin_db_url: str) -> Iterator[LocalWorkflows]:
    with local_workflows(ROOT, admin_db_url, f"tenant-rl-{uuid.uuid4().hex[:8]}") as workflows:
        yield workflows


@pytest.mark.parametrize("refusal", [
    QueueUnavailable("queue refused the message (ServiceUnavailable)"),
    # A function deployed without WORKFLOW_QUEUE_URL: before, the send raised after the commit and failed the batch
    QueueUnconfigured("no queue is configured for workflow runs"),
], ids=["refused", "unconfigured"])
def test_an_announcement_whose_message_sqs_refused_after_the_commit_is_delivered_once_by_the_relay(
        local: LocalWorkflows, admin: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        refusal: Exception) -> None:
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    status, body = local.app.request("PUT", "/notifications/checkpoint_created", tenant,
                                     {"slack": {"channel": "#agent-oncall"}})
    assert status == 200, body
    real_send = SqsWorkflowQueue.send

    def refuse(self: SqsWorkflowQueue, message: WorkflowMessage) -> None:
        raise refusal

    monkeypatch.setattr(SqsWorkflowQueue, "send", refuse)
    status, body = local.app.request("POST", "/incidents", tenant, {**INCIDENT, "run_id": "run-relay-1"})
    assert status == 202, body
    stats = local.app.drain()  # the checkpoint is recorded; its announcement's run is committed, its message refused
    assert stats.failed == 0  # no record of the loop failed for it
    [run] = admin.execute("SELECT id, status FROM m11_audit.workflow_runs WHERE tenant_id = %s", (tenant,)).fetchall()
    assert run["status"] == "queued" and fakes.counts()["slack_messages"] == 0

    monkeypatch.setattr(SqsWorkflowQueue, "send", real_send)
    local.app.invoke("WorkflowRelayFunction", scheduled_event("WorkflowRelayFunction"))
    local.app.drain()
    assert _state(admin, run["id"])["status"] == "queued"  # too young yet: its message may be on its way

    _age(admin, run["id"], 900)
    answer = local.app.invoke("WorkflowRelayFunction", scheduled_event("WorkflowRelayFunction"))
    local.app.drain(duplicate=True)

    assert answer["requeued"] >= 1
    assert _state(admin, run["id"]) == {"status": "completed", "requeues": 1, "error_code": None}
    assert fakes.counts()["slack_messages"] == 1


def test_a_workflow_whose_message_sqs_refuses_is_accepted_once_and_started_by_the_relay(
        local: LocalWorkflows, admin: psycopg.Connection[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit is the acceptance: a 503 would have the client submit the same workflow again while the relay
    starts the first one too."""
    tenant, fakes = local.tenant, local.fakes
    assert fakes is not None
    definition = {"name": "relayed", "steps": [
        {"skill": "slack_send", "args": {"channel": "#agent-oncall", "text": "relayed once"}}]}
    real_send = SqsWorkflowQueue.send

    def refuse(self: SqsWorkflowQueue, message: WorkflowMessage) -> None:
        raise QueueUnavailable("queue refused the message (ServiceUnavailable)")

    monkeypatch.setattr(SqsWorkflowQueue, "send", refuse)
    status, body = local.app.request("POST", "/workflows", tenant, definition)
    assert status == 202 and body["status"] == "queued", body
    run_id = body["workflow_run_id"]
    local.app.drain()
    assert _state(admin, run_id)["status"] == "queued" and fakes.counts()["slack_messages"] == 0

    monkeypatch.setattr(SqsWorkflowQueue, "send", real_send)
    _age(admin, run_id, 900)
    local.app.invoke("WorkflowRelayFunction", scheduled_event("WorkflowRelayFunction"))
    local.app.drain(duplicate=True)

    status, run = local.app.request("GET", f"/workflows/{run_id}", tenant)
    assert status == 200 and run["status"] == "completed", run
    assert fakes.counts()["slack_messages"] == 1
    assert admin.execute("SELECT count(*) AS n FROM m11_audit.workflow_runs WHERE tenant_id = %s",
                         (tenant,)).fetchone() == {"n": 1}


class _Killed(BaseException):
    """Lambda ending the invocation at its timeout (nothing after this runs)."""


class _Invocation:
    """A 60 s invocation (WorkflowRelayFunction's Timeout) on a fake clock; SQS answers slowly but within its
    configured bounds: one read timeout (5 s), a 1 s backoff, then success (7 s in all)."""

    def __init__(self, started_ms: int) -> None:
        self.clock_ms = started_ms
        self.sent: list[WorkflowMessage] = []

    def time_left_ms(self) -> int:
        return 60_000 - self.clock_ms

    def send(self, message: WorkflowMessage) -> None:
        took = 7_000
        assert took <= worst_case_s(SQS_CONFIG) * 1000
        if self.clock_ms + took > 60_000:
            self.clock_ms = 60_000
            raise _Killed("Task timed out after 60.00 seconds")
        self.clock_ms += took
        self.sent.append(message)


def test_a_relay_killed_mid_send_never_fails_a_run_whose_message_was_not_sent(create_database: Any) -> None:
    """The relay kept 5 s when it stopped sending, but one SQS send may take worst_case_s(SQS_CONFIG) (24 s). A send
    started with 5-24 s left was killed with the invocation: its claim stayed counted (requeues + 1) though no
    message went and nothing gave it back; three such relays and the run was failed as never_started, its message
    never sent again (migration 0015: only a message sent counts). A database of its own: the relay spans every
    tenant."""
    own_admin_url = str(create_database())
    migrate.apply(own_admin_url)
    own_fn_url = function_role_url(own_admin_url)
    with psycopg.connect(own_admin_url, autocommit=True, row_factory=dict_row) as admin, \
            psycopg.connect(own_fn_url, row_factory=dict_row) as conn:
        tenant = f"tenant-{uuid.uuid4().hex[:6]}"
        runs = []
        for _ in range(3):  # committed 7 h ago, their message refused by SQS then
            run_id = f"wf_{uuid.uuid4().hex}"
            admin.execute("INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, status, created_at,"
                          " updated_at) VALUES (%s, %s, %s, 'queued', now() - interval '7 hours',"
                          " now() - interval '15 minutes')", (run_id, tenant, Jsonb({"steps": []})))
            runs.append(run_id)
        sent: set[str] = set()
        for _ in range(3):  # three relays, each starting its first send with 6 s left (more than the 5 s kept then)
            invocation = _Invocation(started_ms=54_000)
            try:
                relay_stale_runs(queue=invocation, conn=conn, time_left_ms=invocation.time_left_ms)
            except _Killed:
                pass
            sent |= {m.workflow_run_id for m in invocation.sent}
            admin.execute("UPDATE m11_audit.workflow_runs SET updated_at = now() - interval '15 minutes'"
                          " WHERE id = ANY(%s) AND status = 'queued'", (runs,))
        counted = {r["id"]: r["requeues"] for r in admin.execute(
            "SELECT id, requeues FROM m11_audit.workflow_runs WHERE id = ANY(%s)", (runs,)).fetchall()}

        fast = _Queue()
        relay_stale_runs(queue=fast, conn=conn)  # the next relay, SQS healthy again
        sent |= {m.workflow_run_id for m in fast.sent}
        given_up = {r["id"] for r in admin.execute(
            "SELECT id FROM m11_audit.workflow_runs WHERE id = ANY(%s) AND error_code = 'never_started'",
            (runs,)).fetchall()}

    assert given_up <= sent, (
        f"runs failed as never_started without one message sent: {sorted(given_up - sent)};"
        f" requeues counted by killed relays: {counted}")
