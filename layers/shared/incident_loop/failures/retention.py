"""Retention of failure_matches: delete what is older than the configured age, in small batches.

Each batch is its own short transaction over at most `batch_size` rows found through
idx_fm_created_at, so no lock is held for long and concurrent writers are never blocked for more
than one batch. Retention spans every tenant, which row-level security would hide from the
functions' role: each batch is the owner's narrow purge_failure_matches() (migration 0009).
"""

from __future__ import annotations

import time
from typing import Any

from incident_loop.db import get_connection, transaction
from incident_loop.observability import logger
from incident_loop.stores.failures import purge_batch


def purge_failures(max_age_days: int, *, batch_size: int = 5000, max_seconds: float = 240.0,
                   conn: Any | None = None) -> dict[str, Any]:
    """Delete failures older than max_age_days; stops early (to resume next run) after max_seconds."""
    conn = conn or get_connection()
    deleted, batches, started = 0, 0, time.monotonic()
    while time.monotonic() - started < max_seconds:
        with transaction(conn, tenant_id=None):
            count = purge_batch(conn, max_age_days, batch_size)
        deleted += count
        batches += 1
        if count < batch_size:
            break
    logger.info("failure retention", deleted=deleted, batches=batches, max_age_days=max_age_days)
    return {"deleted": deleted, "batches": batches, "complete": time.monotonic() - started < max_seconds}
