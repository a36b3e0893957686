"""`incident-loop bench loop`: what one message costs each stage of the loop, counted, not timed.

N incidents (five kinds of failure, numbers varying, spread over T tenants) go through the whole
loop locally: onto the ingest queue, through every stage's function in the template's batches of 10,
the checkpoints approved through the API. Every PostgreSQL round trip and statement, AWS call and new
connection made while a function handles a batch is counted against that function's stage (see
bench/counting.py). The figures are per message (records delivered), so they are exact and repeatable,
whatever the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incident_loop_dev.bench.counting import Cost, Counter, counting

ROOT = Path(__file__).resolve().parents[3]
STAGES = ("ingest", "match_pattern", "suggest_recovery", "generate_policy", "adjust_routing")
KINDS = (
    ("SkillTimeoutError", "Skill web_search timed out after {n}s calling https://api.example.com/v1/q?id={n}"),
    ("RateLimitError", "429 Too Many Requests: retry after {n} seconds"),
    ("SchemaValidationError", "Output failed schema validation: field 'items[{n}].price' is not a number"),
    ("HttpError", "HTTP 503 from https://svc.example.com/api/v2/orders/{n}"),
    ("ToolNotFoundError", "Tool calculator_v{n} not registered for agent"),
)


def incident(i: int, tenant: str) -> dict[str, Any]:
    """The i-th incident: one of five kinds, its numbers varying (siblings group by signature)."""
    error_type, template = KINDS[i % len(KINDS)]
    return {"tenant_id": tenant, "agent_id": f"agent-{i % 3}", "run_id": f"run-{i}", "error_type": error_type,
            "skill_id": "web_search", "severity": "high", "error_message": template.format(n=i + 3)}


def run(incidents: int, tenants: int = 1, admin_url: str | None = None) -> dict[str, Any]:
    """N incidents through the whole loop on in-process moto and a scratch database; the counted costs.

    The environment the local application exports is put back as it was afterwards.
    """
    from moto import mock_aws

    from incident_loop_dev.bench.scratch import scratch_database
    from incident_loop_dev.local.runner import LocalApp, reset_container_caches
    from incident_loop_dev.local.services import LOCAL_AWS_ENV, function_role_url

    counter = Counter()

    class CountingApp(LocalApp):
        def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
            fn = self.spec.functions[logical_id]
            records = event.get("Records") if isinstance(event, dict) else None
            counter.current = fn.code_dir.name if records else None  # the API's requests are not a stage
            if counter.current is not None:
                cost = counter.costs.setdefault(counter.current, Cost())
                cost.messages += len(records or [])
                cost.invocations += 1
            try:
                return super().invoke(logical_id, event)
            finally:
                counter.current = None

    admin = admin_url or os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    names = [f"bench-{uuid.uuid4().hex[:6]}-{t}" for t in range(tenants)]
    saved = dict(os.environ)
    os.environ.update(LOCAL_AWS_ENV)
    try:
        with scratch_database(admin) as url, mock_aws(), counting(counter):
            app = CountingApp(ROOT, None, function_role_url(url))
            app.provision()
            for i in range(incidents):
                app.send("IncidentQueue", incident(i, names[i % tenants]))
            app.drain()
            for tenant in names:  # a person approves every checkpoint; the loops resume
                _, listed = app.request("GET", "/checkpoints", tenant)
                for checkpoint in listed["checkpoints"]:
                    app.request("POST", f"/checkpoints/{checkpoint['checkpoint_id']}/resolve", tenant,
                                {"resolution": "approve", "resolved_by": "bench"})
            app.drain()
            complete = _complete(url)
            dead = sum(len(app.dlq_messages(q)) for q, queue in app.spec.queues.items()
                       if "RedrivePolicy" in (queue.get("Properties") or {}))
            reset_container_caches()  # close the functions' connections before the database goes
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_container_caches()
    return {"incidents": incidents, "tenants": tenants, "batch_size": 10, "complete": complete,
            "dead_letters": dead, "stages": {s: counter.costs.get(s, Cost()).per_message() for s in STAGES}}


def _complete(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:  # the owner: every tenant's loops
        row = conn.execute("SELECT count(*) FROM loop_traces WHERE is_complete").fetchone()
    return int(row[0]) if row else 0


# Counted by this benchmark (50 incidents, one tenant) on the loop before it worked set-based: each
# record its own transaction, lock, reads and writes, two idempotency calls and one SendMessage.
BEFORE = {  # stage: (round trips, statements, AWS calls, new connections) per message
    "ingest": (13.04, 13.04, 1.1, 0.06), "match_pattern": (17.4, 17.4, 3.0, 0.0),
    "suggest_recovery": (13.2, 13.2, 2.8, 0.0), "generate_policy": (13.0, 13.0, 3.0, 0.0),
    "adjust_routing": (14.0, 14.0, 2.0, 0.0),
}
MIXED_TENANTS = 5  # --write-docs also counts batches that mix this many tenants (two messages each)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the figures are the output
    with contextlib.redirect_stdout(sys.stderr):  # metrics (EMF) the functions flush are log lines
        result = run(args.incidents, args.tenants)
        mixed = run(args.incidents, MIXED_TENANTS) if args.write_docs else None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for stage, cost in result["stages"].items():
            print(f"{stage:17} {cost['pg_round_trips_per_message']:6} round trips  {cost['aws_calls_per_message']:5}"
                  f" AWS calls  {cost['connections_per_message']:5} connections per message")
        print(f"{result['complete']}/{result['incidents']} loops complete, {result['dead_letters']} dead letters")
    if mixed is not None:
        _write_docs(result, mixed)
    return 0 if result["complete"] == args.incidents and result["dead_letters"] == 0 else 1


def _write_docs(r: dict[str, Any], mixed: dict[str, Any]) -> None:
    from incident_loop_dev.bench.docs import machine, replace_section

    rows = ""
    for stage, c in r["stages"].items():
        rt, st, aws, conn = BEFORE[stage]
        rows += (f"| {stage} | {rt} → **{c['pg_round_trips_per_message']}** | {st} → {c['pg_statements_per_message']}"
                 f" | {aws} → **{c['aws_calls_per_message']}** | {conn} → **{c['connections_per_message']}** |"
                 f" {mixed['stages'][stage]['pg_round_trips_per_message']} |\n")
    replace_section(
        "## Loop cost per message\n\n"
        f"Counted {datetime.now(UTC):%Y-%m-%d} on {machine()} by `incident-loop bench loop --incidents"
        f" {r['incidents']} --write-docs`: {r['incidents']} incidents of five kinds through the whole loop in the"
        " template's batches of 10 (ingest through the ingest queue), checkpoints approved, every PostgreSQL"
        " round trip and statement, AWS call (botocore's before-call) and new connection counted while each"
        " stage's function ran, per message. BEGIN, COMMIT and SAVEPOINT count; a pipelined statement travels"
        " in the round trip of the next read or of the COMMIT. Before: each record its own transaction, lock,"
        " reads and writes, its own Powertools idempotency record (PutItem, UpdateItem) and SendMessage. After:"
        " one pipelined transaction per batch, one lock statement over its incidents, each bridge's reads"
        " ahead with `= ANY(...)`, every event recorded in one statement, the hand-offs ten to a"
        " SendMessageBatch, no idempotency record (the event key and the lock already make a stage exactly"
        " once), and ingest's failures written once per batch on the persistence pool's connection. The goal"
        ": at most 3 round trips and 3 AWS calls per message, no connection per message.\n\n"
        f"| stage | round trips | statements | AWS calls | new connections | round trips, {MIXED_TENANTS} tenants"
        " a batch |\n|---|---|---|---|---|---|\n" + rows + "\n"
        f"The last column mixes {MIXED_TENANTS} tenants in every batch (two messages each, and five times the"
        " first occurrences): the batch is still one transaction, but each tenant's part reads for itself"
        " (row-level security scopes a statement to one tenant).\n")


if __name__ == "__main__":
    raise SystemExit(main())
