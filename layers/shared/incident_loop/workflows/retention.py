"""Retention of the skill audit (seed 004's next steps): ops, replay runs and finished runs past the age, in batches.

Each batch is one short transaction taking at most `batch_size` whole runs, each with every op and replay of
it, and at most `batch_size` older replays of runs that stay (the owner's m11_audit.purge_audit, migrations
0010, 0017 and 0018: retention spans every tenant, which row-level security hides from the functions' role), so
no lock is held long and writers wait at most one batch. A run replayed since the cutoff stays whole.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.db import get_connection, transaction
from incident_loop.observability import logger, metrics
from incident_loop.stores.audit import purge_batch

COUNTS = ("ops_deleted", "replays_deleted", "runs_deleted")


def purge_audit(max_age_days: int, *, batch_size: int = 5000, max_seconds: float = 240.0,
                conn: Any | None = None) -> dict[str, Any]:
    """Delete the audit older than max_age_days, batch by batch; stops after max_seconds (the next run resumes)."""
    conn = conn or get_connection()
    totals = dict.fromkeys(COUNTS, 0)
    batches, started = 0, time.monotonic()
    while time.monotonic() - started < max_seconds:
        with transaction(conn, tenant_id=None):
            counts = purge_batch(conn, max_age_days, batch_size)
        batches += 1
        for name in COUNTS:
            totals[name] += counts[name]
        if all(counts[name] < batch_size for name in COUNTS):
            break
    complete = time.monotonic() - started < max_seconds
    metrics.add_metric(name="AuditOpsDeleted", unit=MetricUnit.Count, value=totals["ops_deleted"])
    logger.info("audit retention", batches=batches, max_age_days=max_age_days, complete=complete, **totals)
    return {**totals, "batches": batches, "complete": complete}
