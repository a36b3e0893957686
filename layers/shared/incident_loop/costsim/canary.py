"""The CostSim canary: a fixed corpus of plans through V1 and V2, a stored report, an alert on failure."""

from __future__ import annotations

import statistics
from typing import Any
from uuid import uuid4

from aws_lambda_powertools.metrics import MetricUnit
from psycopg import Connection

from incident_loop.costsim.models import drift
from incident_loop.costsim.simulators import V1_VERSION, V2_VERSION, simulate_v1, simulate_v2
from incident_loop.observability import logger, metrics
from incident_loop.schemas.costsim import Plan
from incident_loop.stores import costsim as store

# Seed 001: drift p95 above 0.2 is the P1 line; the canary fails at the same line.
CANARY_P95_THRESHOLD = 0.2


def _step(skill: str, model: str, tokens_in: int, tokens_out: int, retries: int = 0, cached: int = 0) -> dict[str, Any]:
    return {"skill": skill, "model": model, "tokens_in": tokens_in, "tokens_out": tokens_out, "retries": retries,
            "cached_tokens_in": cached}


# Fixed, reviewed plans that look like the fleet's: research, coding, chat, embedding, retries.
CORPUS: list[Plan] = [Plan.model_validate({"steps": steps}) for steps in [
    [_step("web_search", "gpt-small", 400, 120), _step("llm_invoke", "claude-haiku", 2500, 600)],
    [_step("llm_invoke", "claude-haiku", 6000, 1500, cached=1000), _step("code_exec", "gpt-small", 300, 50)],
    [_step("llm_invoke", "claude-haiku", 1200, 400, retries=1)],
    [_step("voyage_embed", "voyage-3", 8000, 0), _step("kv_store", "gpt-small", 50, 10)],
    [_step("web_search", "gpt-small", 350, 90)] * 3 + [_step("llm_invoke", "claude-haiku", 4000, 900)],
    [_step("llm_invoke", "claude-haiku", 900, 300, retries=2), _step("slack_send", "gpt-small", 120, 40)],
    [_step("webhook_send", "gpt-small", 80, 20), _step("llm_invoke", "claude-haiku", 1500, 500, cached=500)],
    [_step("code_exec", "gpt-small", 3000, 2000, retries=1, cached=1000)],
]]


def run_canary(conn: Connection[Any], threshold: float | None = None) -> dict[str, Any]:
    """Simulate the corpus with both versions, store the report, and return it."""
    threshold = CANARY_P95_THRESHOLD if threshold is None else threshold
    rows = []
    for plan in CORPUS:
        v1, v2 = simulate_v1(plan), simulate_v2(plan)
        rows.append({"input_hash": plan.input_hash(), "v1_usd": v1.total_usd, "v2_usd": v2.total_usd,
                     "drift": drift(v1.total_usd, v2.total_usd)})
    drifts = sorted(r["drift"] for r in rows)
    p95 = drifts[max(0, round(0.95 * len(drifts)) - 1)]
    report = {
        "id": f"can_{uuid4().hex[:16]}", "v1_version": V1_VERSION, "v2_version": V2_VERSION, "plans": len(rows),
        "drift_p50": statistics.median(drifts), "drift_p95": p95, "drift_max": drifts[-1],
        "passed": p95 <= threshold, "threshold": threshold,
    }
    created = store.insert_canary_report(conn, report, rows)
    metrics.add_metric(name="CostSimCanaryFailed", unit=MetricUnit.Count, value=0 if report["passed"] else 1)
    logger.info("canary run", **{k: v for k, v in report.items() if k != "id"}, report_id=report["id"])
    return {**report, "created_at": created.isoformat() if created else None, "details": rows}


def canary_reports(conn: Connection[Any], limit: int = 20) -> list[dict[str, Any]]:
    """The latest stored reports, newest first."""
    return [{**r, "created_at": r["created_at"].isoformat()} for r in store.canary_reports(conn, limit)]
