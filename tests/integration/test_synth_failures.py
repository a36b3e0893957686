"""synth-failures --count 10000 --validate through the real persistence path."""

from __future__ import annotations

import json
import subprocess
import sys


def test_ten_thousand_synthetic_failures_are_all_stored_with_the_generated_hit_rate(db_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "incident_loop_dev.cli", "synth-failures", "--count", "10000", "--tenants", "7",
         "--validate", "--no-progress", "--database-url", db_url],
        capture_output=True, text=True, env={**__import__("os").environ, "POWERTOOLS_LOG_LEVEL": "ERROR"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["results"] == {"stored": 10000}
    assert report["generated"] == {"exact": 4000, "pattern": 4000, "miss": 2000}
    validation = report["validation"]
    assert (validation["stored"], validation["problems"]) == (10000, [])
    assert validation["hit_rate_stored"] == validation["hit_rate_generated"] == 0.8
    assert report["failures_per_s"] > 0


def test_synth_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", "synth-failures", "--count", "1",
                           "--database-url", empty_db_url], capture_output=True, text=True)
    assert done.returncode != 0 and "run `incident-loop migrate` first" in done.stderr
