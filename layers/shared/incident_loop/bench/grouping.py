"""`incident-loop bench grouping`: Bridge 1's grouping on labelled logs, beside Drain3, same run.

Each file's `Content` column is streamed, in order, as the incidents of one tenant and one error
type through the same normaliser and matcher Bridge 1 uses (in memory, or with `--db` through
the PostgreSQL index and record_match). Labels (`EventId`) are read only by the scorer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drain3 import TemplateMiner  # imported here, outside the timed part

from incident_loop.bench.docs import machine, replace_section
from incident_loop.grouping.matcher import MemoryPatternIndex, decide

TENANT, ERROR_TYPE = "bench", "LogLine"


def read_dataset(path: Path) -> tuple[list[str], list[str]]:
    """(messages, true group labels) of one Loghub CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def grouping_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Share of messages whose predicted group is exactly the set of messages of their true group."""
    by_pred: dict[str, set[int]] = defaultdict(set)
    by_true: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_pred[p].add(i)
        by_true[t].add(i)
    correct = sum(len(members) for members in by_pred.values()
                  if by_true[truth[next(iter(members))]] == members)
    return correct / len(truth)


def group_in_memory(messages: Iterable[str]) -> list[str]:
    """Bridge 1's decision for each message, with an in-memory index."""
    index = MemoryPatternIndex()
    return [index.record(TENANT, ERROR_TYPE, decide(m, ERROR_TYPE, TENANT, index)) for m in messages]


def group_with_drain3(messages: Iterable[str]) -> list[str]:
    miner = TemplateMiner()
    return [str(miner.add_log_message(m)["cluster_id"]) for m in messages]


def _timed(fn: Callable[[list[str]], list[str]], messages: list[str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = fn(messages)
    return out, len(messages) / (time.perf_counter() - start)


def measure(path: Path, db_url: str | None = None) -> dict[str, Any]:
    messages, truth = read_dataset(path)
    ours, ours_rate = _timed(group_in_memory, messages)
    drain, drain_rate = _timed(group_with_drain3, messages)
    result: dict[str, Any] = {
        "dataset": path.name.split("_")[0],
        "messages": len(messages),
        "ga": round(grouping_accuracy(ours, truth), 4),
        "groups": len(set(ours)),
        "true_groups": len(set(truth)),
        "msgs_per_s": round(ours_rate),
        "drain3_ga": round(grouping_accuracy(drain, truth), 4),
        "drain3_groups": len(set(drain)),
        "drain3_msgs_per_s": round(drain_rate),
        "throughput_ratio": round(ours_rate / drain_rate, 2),
    }
    if db_url:
        from incident_loop.bench.grouping_db import group_in_postgres

        stored, db_rate = _timed(lambda ms: group_in_postgres(ms, db_url), messages)
        result["db_ga"] = round(grouping_accuracy(stored, truth), 4)
        result["db_identical"] = _same_partition(stored, ours)
        result["db_msgs_per_s"] = round(db_rate)
    return result


def _same_partition(a: list[str], b: list[str]) -> bool:
    mapping: dict[str, str] = {}
    return all(mapping.setdefault(x, y) == y for x, y in zip(a, b, strict=True)) and len(set(a)) == len(set(b))


def render(results: list[dict[str, Any]], latency: list[dict[str, Any]] | None) -> str:
    lines = [
        "## Grouping (Bridge 1) beside Drain3",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()} by `make bench-grouping`",
        "(`incident-loop bench grouping --db --latency --write-docs`), Loghub-2k, one configuration for all.",
        "",
        "| dataset | GA | groups / true | msgs/s | Drain3 GA | Drain3 groups | Drain3 msgs/s | throughput ratio |"
        + (" PostgreSQL GA | identical | PostgreSQL msgs/s |" if results and "db_ga" in results[0] else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if results and "db_ga" in results[0] else ""),
    ]
    for r in results:
        row = (f"| {r['dataset']} | {r['ga']:.3f} | {r['groups']} / {r['true_groups']} | {r['msgs_per_s']:,} |"
               f" {r['drain3_ga']:.3f} | {r['drain3_groups']} | {r['drain3_msgs_per_s']:,} |"
               f" {r['throughput_ratio']}x |")
        if "db_ga" in r:
            row += f" {r['db_ga']:.3f} | {r['db_identical']} | {r['db_msgs_per_s']:,} |"
        lines.append(row)
    mean = statistics.mean(r["ga"] for r in results)
    drain_mean = statistics.mean(r["drain3_ga"] for r in results)
    lines += ["", f"Mean GA {mean:.3f} (Drain3 {drain_mean:.3f}); throughput ratio (ours / Drain3) from"
              f" {min(r['throughput_ratio'] for r in results)}x to {max(r['throughput_ratio'] for r in results)}x."]
    if latency:
        lines += ["", "### Match latency against stored patterns (PostgreSQL)", "",
                  "| stored patterns | median ms | p95 ms |", "|---|---|---|"]
        lines += [f"| {x['patterns']:,} | {x['median_ms']:.3f} | {x['p95_ms']:.3f} |" for x in latency]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench grouping", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--db", action="store_true", help="also run the stream through PostgreSQL")
    parser.add_argument("--latency", action="store_true", help="match latency at 10^3..10^6 stored patterns")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    db_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres") if (
        args.db or args.latency) else None
    results = [measure(path, db_url if args.db else None) for path in args.files]
    latency = None
    if args.latency:
        from incident_loop.bench.grouping_db import match_latency

        latency = match_latency(db_url or "")
    if args.json:
        print(json.dumps(results if latency is None else {"datasets": results, "latency": latency}, indent=2))
    else:
        print(render(results, latency), end="")
    if args.write_docs:
        replace_section(render(results, latency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
