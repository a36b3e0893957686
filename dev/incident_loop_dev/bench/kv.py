"""`incident-loop bench kv`: seed 004's KV load test, the kv_store skill on moto's DynamoDB over HTTP.

Three phases, each with `--workers` threads (one boto3 client and one skill instance each, as separate
Lambda containers would have), `--ops` operations per worker:

* set: every worker writes its own keys (one UpdateItem each);
* get: every worker reads the keys written (one consistent GetItem each);
* cas: every worker increments one shared counter by compare-and-set (get, then a conditional write;
  a lost race re-reads and tries again). Counted: successful increments per second, conditional
  failures, and lost updates (final counter minus successes; must be 0).

The figures are moto's, on this machine: they compare runs of this code, not DynamoDB's own latency.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from incident_loop.observability import logger
from incident_loop.skills.base import SkillContext
from incident_loop.skills.kv_store import KvStoreSkill
from incident_loop.skills.kvtable import KvTable
from incident_loop_dev.bench.docs import machine
from incident_loop_dev.fakes.aws import serialized_item_writes
from incident_loop_dev.local.services import moto_server

TABLE = "bench-kv"
TENANT = SkillContext("bench-tenant")
MAX_CAS_TRIES = 10_000  # a worker that cannot increment once in this many tries means CAS is broken


def _skill(endpoint: str) -> KvStoreSkill:
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                                            config=Config(retries={"max_attempts": 1}, max_pool_connections=4))
    return KvStoreSkill(kv=KvTable(TABLE, client))


def _phase(skills: list[KvStoreSkill], work: Callable[[int, KvStoreSkill], int]) -> tuple[int, float]:
    """Run work(worker, skill) on every worker at once; (operations done, seconds)."""
    barrier, done, errors = threading.Barrier(len(skills) + 1), [0] * len(skills), []

    def run(index: int) -> None:
        barrier.wait()
        try:
            done[index] = work(index, skills[index])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(skills))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"bench failed: {errors[0]!r}") from errors[0]
    return sum(done), seconds


def run(workers: int, ops: int) -> dict[str, Any]:
    """Start moto's server, run the three phases and return the figures."""
    from incident_loop.skills.kvtable import ensure_table

    with moto_server() as endpoint, serialized_item_writes():
        ensure_table(boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"), TABLE)
        skills = [_skill(endpoint) for _ in range(workers)]
        value = {"status": "ok", "payload": "x" * 200}

        def sets(w: int, skill: KvStoreSkill) -> int:
            for i in range(ops):
                skill.execute({"op": "set", "key": f"w{w}:k{i}", "value": value}, TENANT)
            return ops

        def gets(w: int, skill: KvStoreSkill) -> int:
            for i in range(ops):
                assert skill.execute({"op": "get", "key": f"w{w}:k{i}"}, TENANT)["found"]
            return ops

        conflicts = [0] * workers

        def increments(w: int, skill: KvStoreSkill) -> int:
            for _ in range(ops):
                for _ in range(MAX_CAS_TRIES):
                    current = skill.execute({"op": "get", "key": "counter"}, TENANT)["value"]
                    out = skill.execute({"op": "cas", "key": "counter", "expected": current,
                                         "value": current + 1}, TENANT)
                    if out["swapped"]:
                        break
                    conflicts[w] += 1
                else:
                    raise RuntimeError("compare-and-set never succeeded")
            return ops

        skills[0].execute({"op": "set", "key": "counter", "value": 0}, TENANT)
        set_ops, set_s = _phase(skills, sets)
        get_ops, get_s = _phase(skills, gets)
        cas_ops, cas_s = _phase(skills, increments)
        final = skills[0].execute({"op": "get", "key": "counter"}, TENANT)["value"]
    return {
        "workers": workers, "ops_per_worker": ops,
        "set_ops_per_s": round(set_ops / set_s, 1), "get_ops_per_s": round(get_ops / get_s, 1),
        "cas_ops_per_s": round(cas_ops / cas_s, 1), "cas_conflicts": sum(conflicts),
        "cas_lost_updates": cas_ops - final, "seconds": round(set_s + get_s + cas_s, 2), "machine": machine(),
    }


def render(r: dict[str, Any]) -> str:
    return (f"kv_store on moto over HTTP, {r['workers']} workers x {r['ops_per_worker']} ops: "
            f"set {r['set_ops_per_s']}/s, get {r['get_ops_per_s']}/s, compare-and-set {r['cas_ops_per_s']}/s "
            f"({r['cas_conflicts']} conflicts, {r['cas_lost_updates']} lost updates) in {r['seconds']} s\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench kv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--ops", type=int, default=200, help="operations per worker and phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    level = logger.log_level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # each execution writes its EMF metrics to stdout
            result = run(args.workers, args.ops)
    finally:
        logger.setLevel(level)
    print(json.dumps(result, indent=2) if args.json else render(result), end="\n" if args.json else "")
    return 0 if result["cas_lost_updates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
