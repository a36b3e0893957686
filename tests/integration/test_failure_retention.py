"""Retention deletes only what is older than the configured age, in batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from incident_loop.db import transaction
from incident_loop.failures.retention import purge_failures
from incident_loop.schemas.failures import FailureRecord
from incident_loop.stores.failures import insert


def test_old_failures_are_deleted_in_batches_and_recent_ones_kept(local_app: Any, tenant: str) -> None:
    now = datetime.now(UTC)
    with transaction(tenant_id=tenant) as conn:
        for n in range(25):
            age = timedelta(days=100 + n) if n < 17 else timedelta(days=n)
            insert(conn, FailureRecord(id=uuid.uuid4(), run_id=f"r{n}", tenant_id=tenant, error_code="E",
                                       created_at=now - age))
    report = local_app.invoke("FailureRetentionFunction", {"source": "aws.events"})
    with transaction(tenant_id=tenant) as conn:
        left = conn.execute("SELECT count(*) AS n FROM failure_matches WHERE tenant_id = %(t)s",
                            {"t": tenant}).fetchone()
    assert report["deleted"] >= 17 and report["complete"] is True
    assert left["n"] == 8
    again = purge_failures(90, batch_size=5)
    assert again["deleted"] == 0 and again["batches"] == 1

