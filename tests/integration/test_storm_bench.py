"""`incident-loop bench storm` on the real PostgreSQL: batches of one failure at once, all joining one pattern."""

from __future__ import annotations

from incident_loop_dev.bench.scratch import scratch_database
from incident_loop_dev.bench.storm import BATCH, render, storm


def test_concurrent_batches_of_one_failure_all_land_on_one_pattern_and_none_fails(admin_db_url: str) -> None:
    with scratch_database(admin_db_url) as url:
        rows = storm(url, [6], rounds=1)
    alone, row = rows
    assert alone["patterns"] == 1 and alone["batch alone s"] > 0  # one failure, one key: the storm's case
    assert row["concurrent batches"] == 6 and row["envelopes"] == 6 * BATCH and row["failed envelopes"] == 0
    assert 0 < row["median s"] <= row["slowest s"]
    assert "| 6 |" in render(rows, 2000)
