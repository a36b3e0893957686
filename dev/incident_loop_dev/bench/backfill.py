"""`incident-loop bench backfill`: the provenance backfill beside a plain COPY of the same rows.

Generates N deterministic records into a JSONL file, backfills them into a scratch database,
then truncates and COPYs the very same rows into the same table; prints rows per second of both
and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from incident_loop.costsim.models import drift
from incident_loop.costsim.simulators import simulate_v1, simulate_v2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench backfill", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory() as tmp, scratch_database(admin) as url:
        path = Path(tmp) / "provenance.jsonl"
        with path.open("w") as handle:
            for record in generate(args.rows):
                handle.write(json.dumps(record) + "\n")
        start = time.perf_counter()
        summary = backfill.run([path], url, batch_size=args.batch_size, progress=False)
        backfill_s = time.perf_counter() - start
        rows = [backfill.ProvenanceRecord.model_validate_json(line).row() for line in path.open()]
        with psycopg.connect(url) as conn:
            conn.execute("TRUNCATE costsim_provenance")
            conn.commit()
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY costsim_provenance ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            conn.commit()
            copy_s = time.perf_counter() - start
            copied = conn.execute("SELECT count(*) FROM costsim_provenance").fetchone()
    result = {
        "rows": args.rows, "inserted": summary.inserted, "invalid": len(summary.invalid),
        "backfill_s": round(backfill_s, 2), "backfill_rows_per_s": round(args.rows / backfill_s),
        "copy_s": round(copy_s, 2), "copy_rows_per_s": round(args.rows / copy_s),
        "copied": copied[0] if copied else 0,
        "ratio_backfill_to_copy": round(copy_s / backfill_s, 3),
    }
    print(json.dumps(result, indent=2) if args.json else
          f"backfill {result['backfill_rows_per_s']:,} rows/s, COPY {result['copy_rows_per_s']:,} rows/s,"
          f" ratio {result['ratio_backfill_to_copy']} ({args.rows:,} rows, {summary.inserted:,} inserted)")
    if args.write_docs:
        _write_docs(result)
    return 0 if summary.inserted == args.rows else 1


def _write_docs(r: dict[str, Any]) -> None:
    section = (
        "## Provenance backfill beside COPY\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()} by `make bench-backfill`"
        f" (`incident-loop bench backfill --rows {r['rows']} --write-docs`), PostgreSQL on 127.0.0.1.\n\n"
        "| rows | backfill s | backfill rows/s | COPY s | COPY rows/s | backfill / COPY |\n|---|---|---|---|---|---|\n"
        f"| {r['rows']:,} | {r['backfill_s']} | {r['backfill_rows_per_s']:,} | {r['copy_s']} |"
        f" {r['copy_rows_per_s']:,} | {r['ratio_backfill_to_copy']} |\n\n"
        "The backfill reads and validates JSONL, computes each plan's input hash, and inserts through COPY into a"
        " staging table plus `INSERT ... ON CONFLICT (tenant_id, input_hash) DO NOTHING`, tenant by tenant;"
        " COPY loads the already-built rows.\n"
    )
    replace_section(section)


if __name__ == "__main__":
    raise SystemExit(main())
