"""`incident-loop bench storm`: Bridge 1 under an incident storm on one failure, as many batches at once as
the pattern function's SQS event source lets run.

A storm is one failure reported by many agents at once: every batch of the pattern queue holds siblings of one
pattern, so every batch takes the same candidate key's lock (stores/patterns.py) and they run one after
another inside PostgreSQL, however many containers poll. A batch that waits longer than the functions'
lock_timeout (settings.db_lock_timeout_ms, 2 s) fails and goes back to its queue. For each number of
concurrent batches (workers, each its own bounded connection as a container has, released together), it
prints how long the batches took (the last one waited for all the others), how many envelopes failed, and
the time one batch holds the key (the same batch alone): what the pattern function's MaximumConcurrency
(template.yaml) is chosen from, so that the last of the concurrent batches still gets the lock in time.

Measured on this machine, where the workers, PostgreSQL and this process share its cores: a batch holds the key
longer here than on Aurora with the functions on their own CPUs, so the figures err on the safe side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from incident_loop import db
from incident_loop.loop import ingest
from incident_loop.loop.stage import process_batch
from incident_loop.observability import logger
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import IncidentMessage
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.settings import DEFAULT_DATABASE_URL, get_settings
from incident_loop.stores.unit_of_work import PostgresUnitOfWork
from incident_loop_dev.bench.docs import machine, replace_section
from incident_loop_dev.bench.scratch import scratch_database

BATCH = 10  # the pattern function's BatchSize (template.yaml)
TENANT = "storm"


class _Kept:
    """Hand-offs kept, not sent: only the pattern stage's transaction is measured."""

    def send_all(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        return [None] * len(envelopes)


def _uow(url: str) -> PostgresUnitOfWork:
    return PostgresUnitOfWork(_Kept(), conn=db.connect(url, bounded=True))  # type: ignore[arg-type]


def _stored(url: str, count: int) -> list[Envelope]:
    """`count` incidents of one failure (their numbers varying), stored as ingest stores them: their envelopes."""
    uow = _uow(url)
    try:
        stored = ingest._store(uow, [
            IncidentMessage(tenant_id=TENANT, agent_id=f"agent-{n % 50}", run_id=f"run-{uuid.uuid4().hex}",
                            error_type="SkillTimeoutError",
                            error_message=f"Skill web_search timed out after {n % 30 + 1}s calling "
                                          f"https://api.example.com/v1/q?id={n}")
            for n in range(count)])
    finally:
        uow.conn.close()
    return [ingest._first(incident_id, TENANT, loop_id) for incident_id, loop_id, _ in stored]


def _round(url: str, workers: int) -> dict[str, Any]:
    """`workers` batches of BATCH siblings released at once: each batch's seconds and its failed envelopes."""
    envelopes = _stored(url, workers * BATCH)
    uows = [_uow(url) for _ in range(workers)]  # connected before the start, as warm containers are
    barrier = threading.Barrier(workers)
    seconds: list[float] = [0.0] * workers
    failed: list[int] = [0] * workers

    def run(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        results = process_batch(envelopes[i * BATCH:(i + 1) * BATCH], LoopStage.PATTERN_MATCHED, uow=uows[i])
        seconds[i] = time.perf_counter() - start
        failed[i] = sum(isinstance(r, Exception) for r in results)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for uow in uows:
        uow.conn.close()
    return {"seconds": seconds, "failed": sum(failed)}


def storm(url: str, sizes: Sequence[int], rounds: int) -> list[dict[str, Any]]:
    """Per number of concurrent batches: the batches' median and slowest seconds (over every round), and the
    envelopes that failed. One batch alone first creates the pattern: the storm's batches join it."""
    _round(url, 1)
    alone = statistics.median(_round(url, 1)["seconds"][0] for _ in range(5))
    rows = [{"concurrent batches": 1, "batch alone s": round(alone, 4)}]
    for size in sizes:
        runs = [_round(url, size) for _ in range(rounds)]
        seconds = [s for r in runs for s in r["seconds"]]
        rows.append({"concurrent batches": size, "median s": round(statistics.median(seconds), 3),
                     "slowest s": round(max(seconds), 3), "failed envelopes": sum(r["failed"] for r in runs),
                     "envelopes": size * BATCH * rounds})
    with db.connect(url) as conn:  # one failure: every batch joined the one pattern (one key, one lock)
        rows[0]["patterns"] = conn.execute("SELECT count(*) AS n FROM failure_patterns WHERE tenant_id = %(t)s",
                                           {"t": TENANT}).fetchone()["n"]
    return rows


def render(rows: list[dict[str, Any]], lock_timeout_ms: int) -> str:
    alone = rows[0]["batch alone s"]
    lines = [f"one batch of {BATCH} alone holds the key {alone * 1000:.1f} ms; lock_timeout {lock_timeout_ms} ms; "
             f"patterns made: {rows[0]['patterns']}", "",
             "| concurrent batches | median s | slowest s | failed envelopes / envelopes |", "|---|---|---|---|"]
    lines += [f"| {r['concurrent batches']} | {r['median s']} | {r['slowest s']} | {r['failed envelopes']} / "
              f"{r['envelopes']} |" for r in rows[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DATABASE_URL, help="an admin URL: a scratch database is made there")
    parser.add_argument("--sizes", default="10,25,50,75", help="concurrent batches, comma-separated (each holds a "
                        "connection: keep under the server's max_connections)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help="rewrite its section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    logger.setLevel("WARNING")  # a line per envelope would be most of the run
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # and so would the stage's metrics
    with scratch_database(args.db) as url:
        rows = storm(url, sizes, args.rounds)
    lock_ms = get_settings().db_lock_timeout_ms
    print(json.dumps({"lock_timeout_ms": lock_ms, "rows": rows}, indent=2) if args.json else render(rows, lock_ms))
    if args.write_docs:
        replace_section(SECTION.format(when=datetime.now(UTC).date().isoformat(), machine=machine(),
                                       argv=" ".join(["incident-loop bench storm", *(argv or [])]),
                                       rounds=args.rounds, table=render(rows, lock_ms)))
    return 0


SECTION = """## Bridge 1 under a storm on one failure

Measured {when} on {machine} by `{argv}` ({rounds} rounds per row): batches of 10 siblings of one
pattern, as many at once as the row says, each on its own connection with the functions' lock_timeout, all
after the same candidate key's lock (stores/patterns.py), so they run one after another. The slowest batch
waited for all the others. The workers, PostgreSQL and the benchmark share this machine's cores: a batch holds
the key longer here than on Aurora, so these err on the safe side.

{table}

`MatchPatternFunction`'s SQS event source runs at most `PatternMaxConcurrency` batches at once (template.yaml,
default 50): at this machine's hold time the last of 50 waits about 0.6 s, a third of the lock_timeout, which
leaves room for a slower database (a hold of up to about 35 ms per batch). Uncapped, SQS would scale the
function toward 1,250 concurrent batches, and beyond about 160 on one key here the last ones would wait past
the lock_timeout, fail and be redelivered (then dead-lettered after five receives).
"""
