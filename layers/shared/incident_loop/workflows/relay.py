"""The workflow relay: queued runs whose message never reached the runner get it again.

A run is written in its caller's transaction and its message sent after the commit (the loop's announcements,
POST /workflows). When SQS refuses that message the run is committed and `queued` with nothing to start it.
Every few minutes (WorkflowRelayFunction) the runs queued and untouched for WORKFLOW_RELAY_MIN_AGE_S are
claimed in one short transaction across every tenant (migration 0013) and their messages sent again: the
runner's idempotency (tenant, run, segment) and its lease make a message that was only late harmless. A
run still not started after WORKFLOW_RELAY_MAX_REQUEUES messages is failed as never_started.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.db import get_connection, transaction
from incident_loop.observability import logger, metrics
from incident_loop.schemas.workflows import WorkflowMessage
from incident_loop.settings import get_settings
from incident_loop.stores.audit import claim_stale_runs
from incident_loop.stores.queues import QueueUnavailable
from incident_loop.stores.workflow_queue import SqsWorkflowQueue
from incident_loop.workflows.ports import WorkflowQueue

MAX_RUNS = 500  # per invocation; the next one takes the rest


def relay_stale_runs(*, queue: WorkflowQueue | None = None, conn: Any | None = None,
                     max_runs: int = MAX_RUNS) -> dict[str, int]:
    """Send a message again for every stale queued run; fail the runs out of requeues. The counts."""
    settings = get_settings()
    conn = conn or get_connection()
    with transaction(conn, tenant_id=None):
        claimed = claim_stale_runs(conn, settings.workflow_relay_min_age_s, settings.workflow_relay_max_requeues,
                                   max_runs)
    queue = queue or SqsWorkflowQueue()
    requeued = not_sent = abandoned = 0
    for run in claimed:
        if run["abandoned"]:
            abandoned += 1
            logger.warning("workflow run never started", workflow_run_id=run["workflow_run_id"],
                           tenant_id=run["tenant_id"], requeues=run["requeues"])
            continue
        message = WorkflowMessage(workflow_run_id=run["workflow_run_id"], tenant_id=run["tenant_id"],
                                  correlation_id=run["workflow_run_id"])
        try:
            queue.send(message)
        except QueueUnavailable:  # counted as a requeue all the same: the next relay tries again
            not_sent += 1
            logger.exception("workflow run not requeued", workflow_run_id=run["workflow_run_id"])
            continue
        requeued += 1
        logger.info("workflow run requeued", workflow_run_id=run["workflow_run_id"], tenant_id=run["tenant_id"],
                    requeues=run["requeues"])
    metrics.add_metric(name="WorkflowRunsRequeued", unit=MetricUnit.Count, value=requeued)
    metrics.add_metric(name="WorkflowRunsNeverStarted", unit=MetricUnit.Count, value=abandoned)
    return {"requeued": requeued, "not_sent": not_sent, "never_started": abandoned}
