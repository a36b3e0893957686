"""The workflow relay: queued runs whose message never reached the runner get it again.

A run is written in its caller's transaction and its message sent after the commit (the loop's announcements,
POST /workflows). When SQS refuses that message the run is committed and `queued` with nothing to start it.
Every few minutes (WorkflowRelayFunction) the runs queued and untouched for WORKFLOW_RELAY_MIN_AGE_S are
claimed in one short transaction across every tenant (migration 0013) and their messages sent again, at
most WORKFLOW_RELAY_MAX_REQUEUES times each; a claim not sent (SQS refused, or no time left) is given back
(migration 0015), so only a message sent counts. A message that was only late is harmless: the runner's lease and
the audit's per-op keys make a run happen once whatever number of messages name it. A run still not started
WORKFLOW_RELAY_GIVE_UP_S after it was made (longer than any message of it lives on the queue) is failed as
never_started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.aws import SQS_CONFIG, worst_case_s
from incident_loop.batch import record_reserve_ms
from incident_loop.db import get_connection, transaction
from incident_loop.observability import logger, metrics
from incident_loop.schemas.workflows import WorkflowMessage
from incident_loop.settings import get_settings
from incident_loop.stores.audit import claim_stale_runs, release_claims
from incident_loop.stores.queues import QueueUnavailable
from incident_loop.stores.workflow_queue import SqsWorkflowQueue
from incident_loop.workflows.ports import WorkflowQueue

MAX_RUNS = 500  # per invocation; the next one takes the rest


def reserve_ms() -> int:
    """Left to the invocation when the relay stops sending: one send's worst case (24 s), then giving the unsent
    claims back (a connect and a statement at their bounds). With only 5 s kept, a slow send was killed with the
    invocation: its run's requeue stayed counted though no message went, and three such relays failed it as never
    started. A claim not sent waits for the next relay."""
    return int(worst_case_s(SQS_CONFIG) * 1000) + record_reserve_ms()


def relay_stale_runs(*, queue: WorkflowQueue | None = None, conn: Any | None = None, max_runs: int = MAX_RUNS,
                     time_left_ms: Callable[[], int] | None = None) -> dict[str, int]:
    """Send a message again for every stale queued run; fail the runs never started. The counts."""
    settings = get_settings()
    conn = conn or get_connection()
    with transaction(conn, tenant_id=None):
        claimed = claim_stale_runs(conn, settings.workflow_relay_min_age_s, settings.workflow_relay_max_requeues,
                                   settings.workflow_relay_give_up_s, max_runs)
    queue = queue or SqsWorkflowQueue()
    relayed_at = int(time.time())
    counts = {"requeued": 0, "not_sent": 0, "never_started": 0}
    unsent: list[str] = []
    reserve = reserve_ms()
    abandoned = [run for run in claimed if run["abandoned"]]
    for run in abandoned:
        logger.warning("workflow run never started", workflow_run_id=run["workflow_run_id"],
                       tenant_id=run["tenant_id"], requeues=run["requeues"])
    # Counted as soon as they are committed failed: nothing later in this invocation (a resend, giving claims
    # back) may keep them from the alarm, and no later relay sees them again.
    counts["never_started"] = len(abandoned)
    metrics.add_metric(name="WorkflowRunsNeverStarted", unit=MetricUnit.Count, value=len(abandoned))
    for run in claimed:
        if run["abandoned"]:
            continue
        run_id, tenant = run["workflow_run_id"], run["tenant_id"]
        if counts["not_sent"] or (time_left_ms is not None and time_left_ms() < reserve):
            counts["not_sent"] += 1  # SQS refused one already, or no time left: the next relay tries again
            unsent.append(run_id)
            continue
        try:
            queue.send(WorkflowMessage(workflow_run_id=run_id, tenant_id=tenant, correlation_id=run_id,
                                       relayed_at=relayed_at))
        except QueueUnavailable:
            counts["not_sent"] += 1
            unsent.append(run_id)
            logger.exception("workflow run not requeued", workflow_run_id=run_id)
            continue
        counts["requeued"] += 1
        logger.info("workflow run requeued", workflow_run_id=run_id, tenant_id=tenant, requeues=run["requeues"])
    if unsent:  # given back: a requeue is counted only for a message sent, so no run is given up unsent
        with transaction(conn, tenant_id=None):
            release_claims(conn, unsent, settings.workflow_relay_min_age_s)
    metrics.add_metric(name="WorkflowRunsRequeued", unit=MetricUnit.Count, value=counts["requeued"])
    return counts
