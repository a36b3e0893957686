"""`incident-loop synth-failures`: realistic failures across the catalog, through the real persistence path.

Each failure is generated with what its match must be (exact code, message pattern, or a miss), sent
through persist_failure, and with --validate every one is checked in failure_matches: stored, once,
with the expected match; the hit and miss rates stored must equal the generated ones.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from tqdm import tqdm

from incident_loop.catalog.lookup import Catalog
from incident_loop.db import connect, transaction
from incident_loop.failures.persist import catalog, persist_failure
from incident_loop.schemas.failures import FailureIn
from incident_loop.stores.failures import matches_of, migrated

# Messages a runtime really produces, per catalog entry: they must match that entry's patterns.
MESSAGES = {
    "SKILL_TIMEOUT": "Skill {skill} timed out after {n}s calling https://api.example.com/v1/q?id={n}",
    "RATE_LIMITED": "429 Too Many Requests: rate limit of {n} tokens/min exceeded, retry after {k}s",
    "UPSTREAM_5XX": "HTTP 503 Service Unavailable from https://svc.example.com/orders/{n}",
    "CONNECTION_FAILED": "Connection refused by 10.0.{k}.{n}:5432",
    "AUTH_FAILED": "401 Unauthorized: invalid API key for provider {skill}",
    "SCHEMA_VIOLATION": "Output failed schema validation: field 'items[{k}].price' is not a number",
    "BUDGET_EXCEEDED": "Run {n} stopped: budget exceeded by ${k}.{n}",
    "POLICY_BLOCKED": "Step {k} blocked by policy pol_{n}",
    "CONTEXT_OVERFLOW": "This model's maximum context length is 8192 tokens, you sent {n}",
    "TOOL_NOT_FOUND": "Tool '{skill}_{k}' not registered for agent {n}",
}
MISSES = ["the flux capacitor wobbled on shard {n}", "unexpected end of plan at step {k}",
          "agent {n} produced no output"]
SKILLS = ["web_search", "llm_invoke", "code_exec", "kv_store", "voyage_embed"]


@dataclass(frozen=True)
class Synthetic:
    failure: FailureIn
    expected: Literal["exact", "pattern", "miss"]
    code: str | None


def generate(count: int, tenants: int, seed: int = 7, found: Catalog | None = None) -> list[Synthetic]:
    """count failures over `tenants` tenants: 40% exact code, 40% message pattern, 20% misses."""
    rng = random.Random(seed)
    entries = (found or catalog()).entries
    run_tag = uuid.uuid4().hex[:6]
    out = []
    for i in range(count):
        entry = entries[i % len(entries)]
        fill = {"n": rng.randint(1, 99999), "k": rng.randint(1, 99), "skill": rng.choice(SKILLS)}
        kind = ("exact", "pattern", "exact", "pattern", "miss")[i % 5]
        if kind == "miss":
            code, message, expected_code = f"E_{run_tag}_{i % 17}", rng.choice(MISSES).format(**fill), None
        else:
            code = entry.code if kind == "exact" else f"E_RUNTIME_{i % 13}"
            message, expected_code = MESSAGES[entry.code].format(**fill), entry.code
        out.append(Synthetic(FailureIn(run_id=f"synth-{run_tag}-{i // 10}", tenant_id=f"synth-{run_tag}-{i % tenants}",
                                       error_code=code, error_message=message, skill_id=fill["skill"],
                                       step_index=i % 10, context={"synthetic": True}, failure_id=uuid.uuid4()),
                             kind, expected_code))  # type: ignore[arg-type]
    return out


def run(count: int, tenants: int, *, validate: bool, dsn: str | None = None, workers: int = 8,
        progress: bool = True) -> dict[str, Any]:
    """Send the failures through persist_failure (concurrently) and, with validate, check every one."""
    with connect(dsn) as conn:
        ready = migrated(conn)
    if not ready:
        raise SystemExit("failure_matches does not exist in this database: run `incident-loop migrate` first")
    items = generate(count, tenants)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=count, unit=" failures",
                                                               disable=not progress) as bar:
        outcomes = []
        for outcome in pool.map(lambda s: persist_failure(s.failure, dsn=dsn), items):
            outcomes.append(outcome)
            bar.update(1)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        "count": count, "tenants": tenants, "seconds": round(seconds, 2),
        "failures_per_s": round(count / seconds), "results": dict(Counter(o.result for o in outcomes)),
        "generated": dict(Counter(s.expected for s in items)),
    }
    if validate:
        report["validation"] = _validate(items, dsn)
        report["valid"] = report["validation"]["problems"] == []
    return report


def _validate(items: list[Synthetic], dsn: str | None) -> dict[str, Any]:
    by_tenant: dict[str, list[Any]] = {}
    for s in items:
        by_tenant.setdefault(s.failure.tenant_id, []).append(s.failure.failure_id)
    rows: list[dict[str, Any]] = []
    with connect(dsn) as conn:
        for tenant, ids in by_tenant.items():  # each tenant's rows under its own scope
            with transaction(conn, tenant_id=tenant):
                rows += matches_of(conn, tenant, ids)
    stored = {r["id"]: r for r in rows}
    problems = []
    for s in items:
        row = stored.get(s.failure.failure_id)
        if row is None:
            problems.append(f"{s.failure.failure_id}: not stored")
        elif row["match_type"] != s.expected or (row["catalog_entry_id"] or "").split("@")[0] != (s.code or ""):
            problems.append(f"{s.failure.failure_id}: stored {row['match_type']} {row['catalog_entry_id']},"
                            f" expected {s.expected} {s.code}")
    generated_hits = sum(1 for s in items if s.expected != "miss")
    stored_hits = sum(1 for r in rows if r["catalog_entry_id"] is not None)
    return {"stored": len(rows), "expected": len(items), "hit_rate_generated": round(generated_hits / len(items), 4),
            "hit_rate_stored": round(stored_hits / max(len(rows), 1), 4), "problems": problems[:20]}
