"""`incident-loop bench backfill`: the provenance backfill beside a plain COPY of the same rows.

Generates N deterministic records into a JSONL file, backfills them into a scratch database,
then truncates and COPYs the very same rows into the same table; prints rows per second of both
and their ratio (backfill rows/s over COPY rows/s), measured in the same run. With --runs R it does
that R times and reports the median ratio; beside it, how much the backfill's resident memory grew
(its peak over what it began with): the same for any number of rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from incident_loop.costsim.models import drift
from incident_loop.costsim.simulators import simulate_v1, simulate_v2
from incident_loop.observability import logger
from incident_loop.schemas.costsim import Plan
from incident_loop.stores.costsim import COLUMNS
from incident_loop_dev import backfill
from incident_loop_dev.bench.docs import machine, replace_section
from incident_loop_dev.bench.scratch import scratch_database

SKILLS = ["web_search", "llm_invoke", "code_exec", "kv_store", "voyage_embed"]
MODELS = ["gpt-small", "gpt-large", "claude-haiku", "claude-sonnet", "voyage-3"]


def generate(n: int) -> Iterator[dict[str, Any]]:
    """n distinct, deterministic provenance records."""
    start = datetime(2025, 12, 1, tzinfo=UTC)
    for i in range(n):
        steps = [{"skill": SKILLS[(i + k) % 5], "model": MODELS[(i * 7 + k) % 5], "tokens_in": 100 + i % 5000 + k,
                  "tokens_out": 50 + (i // 5000) % 2000, "retries": (i + k) % 3, "cached_tokens_in": (i % 7) * 10}
                 for k in range(1 + i % 3)]
        plan = Plan.model_validate({"steps": steps})
        v1, v2 = simulate_v1(plan), simulate_v2(plan)
        yield {"tenant_id": f"tenant-{i % 50}", "plan": plan.model_dump(mode="json"), "v1_version": v1.version,
               "v1_cost_usd": v1.total_usd, "v2_version": v2.version, "v2_cost_usd": v2.total_usd,
               "drift": drift(v1.total_usd, v2.total_usd), "served": "v2",
               "created_at": (start + timedelta(seconds=i)).isoformat()}


def _rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class PeakMemory:
    """The highest resident memory seen while the block runs (sampled every 20 ms), and what it began at."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = _rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *_: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def measure(path: Path, url: str, rows: int, batch_size: int) -> dict[str, Any]:
    """One backfill of the file, then one COPY of the same rows into the emptied table: their rates."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        summary = backfill.run([path], url, batch_size=batch_size, progress=False)
        backfill_s = time.perf_counter() - start
    built = [backfill.ProvenanceRecord.model_validate_json(line).row() for line in path.open()]
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE costsim_provenance")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY costsim_provenance ({', '.join(COLUMNS)}) FROM STDIN") as cp:
            for row in built:
                cp.write_row(row)
        conn.commit()
        copy_s = time.perf_counter() - start
        copied = conn.execute("SELECT count(*) FROM costsim_provenance").fetchone()
        conn.execute("TRUNCATE costsim_provenance")  # the next run starts from an empty table again
        conn.commit()
    return {"inserted": summary.inserted, "invalid": len(summary.invalid), "backfill_s": round(backfill_s, 2),
            "backfill_rows_per_s": round(rows / backfill_s), "copy_s": round(copy_s, 2),
            "copy_rows_per_s": round(rows / copy_s), "copied": copied[0] if copied else 0,
            "ratio": round(copy_s / backfill_s, 3),
            "backfill_memory_mb": round(memory.peak - memory.start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench backfill", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1, help="measure this many times; the ratio is the median")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    logger.setLevel("WARNING")  # the scratch database's migrations log each one: stdout carries the figures
    with contextlib.redirect_stdout(sys.stderr), tempfile.TemporaryDirectory() as tmp, \
            scratch_database(admin) as url:
        path = Path(tmp) / "provenance.jsonl"
        with path.open("w") as handle:
            for record in generate(args.rows):
                handle.write(json.dumps(record) + "\n")
        runs = [measure(path, url, args.rows, args.batch_size) for _ in range(args.runs)]
    middle = sorted(runs, key=lambda r: r["ratio"])[(len(runs) - 1) // 2]
    result = {"rows": args.rows, "runs": len(runs), **middle,
              "ratio": round(statistics.median(r["ratio"] for r in runs), 3),
              "ratios": [r["ratio"] for r in runs]}
    print(json.dumps(result, indent=2) if args.json else
          f"backfill {result['backfill_rows_per_s']:,} rows/s, COPY {result['copy_rows_per_s']:,} rows/s,"
          f" ratio {result['ratio']} (median of {len(runs)}; {args.rows:,} rows, {result['inserted']:,} inserted,"
          f" {result['backfill_memory_mb']} MB of memory)")
    if args.write_docs:
        _write_docs(result)
    return 0 if all(r["inserted"] == args.rows for r in runs) else 1


# Before the backfill streamed into COPY (staging and ON CONFLICT for every batch, tenant by tenant, the
# garbage collector on, reading and writing one after the other): the median of 4 runs of 200,000 rows.
BEFORE_RATIO = 0.237


def _write_docs(r: dict[str, Any]) -> None:
    runs = f" --runs {r['runs']}" if r["runs"] > 1 else ""
    section = (
        "## Provenance backfill beside COPY\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()} by `incident-loop bench backfill --rows {r['rows']}"
        f"{runs} --write-docs` (`make bench-backfill` runs it on a million rows), PostgreSQL on 127.0.0.1, the"
        f" machine shared with other work. The ratio is the median of {r['runs']} run(s)"
        f" ({', '.join(map(str, r['ratios']))}); the other figures are the median run's. Memory is how much the"
        " backfill's resident memory grew over what it began with: one batch is held at a time, whatever the"
        " number of rows.\n\n"
        "| rows | backfill s | backfill rows/s | COPY s | COPY rows/s | backfill / COPY | backfill memory |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {r['rows']:,} | {r['backfill_s']} | {r['backfill_rows_per_s']:,} | {r['copy_s']} |"
        f" {r['copy_rows_per_s']:,} | {r['ratio']} | {r['backfill_memory_mb']} MB |\n\n"
        f"Before the backfill streamed into COPY the ratio was {BEFORE_RATIO} (median of 4 runs of 200,000 rows)."
        " The backfill reads and"
        " validates each JSONL record and computes its plan's input hash with the garbage collector paused. As"
        " the table's owner it streams each record into a COPY straight into the table as soon as it is read,"
        " so PostgreSQL stores one record while Python parses the next; a batch goes in whole or not at all (a"
        " key stored already turns it back to a staging table and `INSERT ... ON CONFLICT (tenant_id,"
        " input_hash) DO NOTHING`, and the batches after it are probed first). Any other role stages every"
        " batch, tenant by tenant (row-level security). COPY loads the already-built rows.\n"
    )
    replace_section(section)


if __name__ == "__main__":
    raise SystemExit(main())
