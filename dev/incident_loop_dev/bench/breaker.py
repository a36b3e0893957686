"""`incident-loop bench breaker`: workers race to trip and to auto-recover one breaker on moto's HTTP server.

Each worker has its own boto3 client and its own Breaker, as separate Lambda containers would. Every
round: all workers read the breaker, then record failures until it trips; after the cooldown all call
allow() at the same moment (auto-recovery: one moves it to HALF_OPEN and is the probe; its success
closes it). Counted per round: how many workers won each transition (exactly one, or the race is lost)
and every DynamoDB request the workers sent (a botocore `before-send` hook on each client).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from incident_loop.breaker import (
    Breaker,
    BreakerConfig,
    BreakerState,
    ConsecutiveFailures,
    DynamoBreakerStore,
    FailMode,
    MemoryHistory,
    Transition,
    ensure_table,
)
from incident_loop.observability import logger, metrics
from incident_loop_dev.bench.docs import machine, replace_section
from incident_loop_dev.local.services import moto_server

TABLE, NAME = "bench-breakers", "bench:race"
THRESHOLD = 5
MAX_CALLS_PER_PHASE = 1000  # a worker stuck in a phase means the breaker is broken: fail loudly
STEPS = {("CLOSED", "OPEN"): "trips", ("OPEN", "HALF_OPEN"): "recoveries", ("HALF_OPEN", "CLOSED"): "closes"}


@dataclass
class Worker:
    breaker: Breaker
    calls: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    won: list[tuple[int, str, str]] = field(default_factory=list)
    round: int = 0

    def count_call(self, request: Any, **_: Any) -> None:
        self.calls[request.headers.get("X-Amz-Target", b"?").decode().rsplit(".", 1)[-1]] += 1

    def count_conflict(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            self.conflicts += 1

    def note(self, t: Transition) -> None:
        self.won.append((self.round, t.from_state.value, t.to_state.value))


def _worker(index: int, endpoint: str, config: BreakerConfig, history: MemoryHistory) -> Worker:
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=4))
    worker = Worker(Breaker(NAME, config, store=DynamoBreakerStore(TABLE, client), history=history,
                            worker=f"bench-{index}"))
    worker.breaker.on_transition.append(worker.note)
    client.meta.events.register("before-send.dynamodb", worker.count_call)
    client.meta.events.register("after-call.dynamodb", worker.count_conflict)
    return worker


def _race(worker: Worker, rounds: int, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    breaker = worker.breaker
    try:
        for r in range(rounds):
            barrier.wait()
            worker.round = r
            breaker.refresh()  # the round starts with every worker's cache expired
            barrier.wait()
            for _ in range(MAX_CALLS_PER_PHASE):  # trip: record failures until this worker sees it open
                record = breaker.cached()
                if record is not None and record.state is not BreakerState.CLOSED:
                    break
                if breaker.allow():
                    breaker.record_failure("bench")
            else:
                raise RuntimeError(f"round {r}: the breaker never tripped")
            barrier.wait()
            record = breaker.cached()
            time.sleep(max(0.0, (record.cooldown_until or 0.0) - time.time()) if record else 0.0)
            barrier.wait()  # all at once: auto-recover
            if breaker.allow():
                breaker.record_success()
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)
        barrier.abort()


def run(workers: int, rounds: int, cooldown_s: float) -> dict[str, Any]:
    """Start moto's server, race `workers` threads for `rounds` rounds, and return the figures."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    began = time.perf_counter()
    with moto_server() as endpoint:
        ensure_table(boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"), TABLE)
        history = MemoryHistory()
        config = BreakerConfig(rule=ConsecutiveFailures(THRESHOLD, cooldown_s), cooldown_s=cooldown_s,
                               half_open_probes=1, cache_ttl_s=1.0, fail_mode=FailMode.CLOSED)
        pool = [_worker(i, endpoint, config, history) for i in range(workers)]
        barrier, errors = threading.Barrier(workers), []  # type: ignore[var-annotated]
        threads = [threading.Thread(target=_race, args=(w, rounds, barrier, errors)) for w in pool]
        setup = time.perf_counter() - began
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"bench failed: {errors[0]!r}") from errors[0]
    return _figures(pool, history, workers, rounds, cooldown_s, seconds, setup)


def _figures(pool: list[Worker], history: MemoryHistory, workers: int, rounds: int, cooldown_s: float,
             seconds: float, setup: float) -> dict[str, Any]:
    per_round: dict[int, Counter[str]] = {r: Counter() for r in range(rounds)}
    for worker in pool:
        for r, old, new in worker.won:
            per_round[r][STEPS.get((old, new), f"{old}->{new}")] += 1
    totals = sum(per_round.values(), Counter())
    calls = sum((w.calls for w in pool), Counter())
    transitions = sum(totals.values())
    versions = [row["version"] for row in history.rows]
    return {
        "rounds": rounds, "workers": workers, "cooldown_s": cooldown_s,
        "trips": totals["trips"], "recoveries": totals["recoveries"], "closes": totals["closes"],
        "double_transitions": sum(1 for c in per_round.values() if any(n > 1 for n in c.values())),
        "missed_transitions": sum(1 for c in per_round.values() if any(c[s] != 1 for s in STEPS.values())),
        "other_transitions": {k: v for k, v in totals.items() if k not in STEPS.values()},
        "history_rows": len(history.rows), "history_versions_unique": len(set(versions)) == len(versions),
        "dynamodb_calls": sum(calls.values()), "dynamodb_calls_by_operation": dict(sorted(calls.items())),
        "dynamodb_calls_per_transition": round(sum(calls.values()) / transitions, 2) if transitions else None,
        "dynamodb_calls_per_round": round(sum(calls.values()) / rounds, 1),
        "conditional_check_failures": sum(w.conflicts for w in pool),
        "seconds": round(seconds, 2), "setup_seconds": round(setup, 2),
        "machine": machine(),
    }


def passed(result: dict[str, Any]) -> bool:
    rounds = result["rounds"]
    return (result["trips"] == result["recoveries"] == result["closes"] == rounds and not result["other_transitions"]
            and result["double_transitions"] == 0 and result["missed_transitions"] == 0
            and result["history_rows"] == 3 * rounds and result["history_versions_unique"])


def render(result: dict[str, Any]) -> str:
    r = result
    ops = ", ".join(f"{op} {n:,}" for op, n in r["dynamodb_calls_by_operation"].items())
    return "\n".join([
        "## Breaker race (DynamoDB conditional writes)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {r['machine']} by `incident-loop bench breaker "
        f"--workers {r['workers']} --rounds {r['rounds']}`, moto's server over HTTP on 127.0.0.1, "
        f"cooldown {r['cooldown_s']} s, threshold {THRESHOLD}.",
        "",
        "| rounds | workers | trips | recoveries | closes | double transitions | DynamoDB calls / transition "
        "| calls / round | conditional failures | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['rounds']} | {r['workers']} | {r['trips']} | {r['recoveries']} | {r['closes']} "
        f"| {r['double_transitions']} | {r['dynamodb_calls_per_transition']} | {r['dynamodb_calls_per_round']} "
        f"| {r['conditional_check_failures']:,} | {r['seconds']} |",
        "",
        f"Calls by operation: {ops}. History rows: {r['history_rows']} (versions unique: "
        f"{r['history_versions_unique']}). Result: {'PASS' if passed(r) else 'FAIL'}.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench breaker", description=__doc__)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=60, help="60 keeps the run under a minute on 2 cores")
    parser.add_argument("--cooldown", type=float, default=0.05, help="seconds the breaker stays open")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show transition logs and metrics")
    parser.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    level = logger.log_level
    if not args.verbose:
        logger.setLevel(logging.WARNING)  # 3 transitions a round: the figures are the output
    sink = contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with sink:  # Powertools prints EMF every 100 metric values
            result = run(args.workers, args.rounds, args.cooldown)
    finally:
        logger.setLevel(level)
        metrics.clear_metrics()
    print(json.dumps(result, indent=2) if args.json else render(result), end="\n" if args.json else "")
    if args.write_docs:
        replace_section(render(result))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
