"""CostSim as the functions use it: the canary, simulate (V2 behind its breaker), status, health."""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop import breakers
from incident_loop.alerts import enqueue
from incident_loop.breaker import Breaker
from incident_loop.breaker.rules import MIN_P95_SAMPLES, p95_min_samples
from incident_loop.breaker_alerts import last_costsim_incident, reconcile_costsim_incidents
from incident_loop.costsim.canary import canary_reports, run_canary
from incident_loop.costsim.models import drift
from incident_loop.costsim.simulators import simulate_v1, simulate_v2
from incident_loop.db import transaction
from incident_loop.observability import logger, metrics
from incident_loop.schemas.alerts import Alert
from incident_loop.schemas.costsim import SimulateRequest
from incident_loop.stores import costsim as store


class V2Guard(Protocol):
    """What CostSim needs of the costsim-v2 circuit breaker."""

    def allow(self) -> bool: ...

    def report_drift(self, value: float) -> None: ...


def v2_guard() -> Breaker:
    """The costsim-v2 breaker of this container, with its alerts and incidents wired."""
    return breakers.named(breakers.COSTSIM_V2)


def canary() -> dict[str, Any]:
    """Run the canary; a failed run raises the seed's CostSimV2CanaryFailure alert. A run that could not finish (V2
    raised, the database was down) is a failed run too: counted and alerted, then raised (the invocation fails)."""
    try:
        with transaction(tenant_id=None) as conn:  # canary reports are global
            report = run_canary(conn)
    except Exception as exc:
        metrics.add_metric(name="CostSimCanaryFailed", unit=MetricUnit.Count, value=1)
        logger.exception("canary could not run")
        try:
            enqueue(Alert.firing("CostSimV2CanaryFailure", "P2", f"canary could not run: {type(exc).__name__}"))
        except Exception:  # noqa: BLE001 - the metric's alarm still pages; the canary's own error is the one raised
            logger.exception("canary failure alert not queued")
        raise
    if not report["passed"]:
        enqueue(Alert.firing(
            "CostSimV2CanaryFailure", "P2",
            f"canary drift p95 {report['drift_p95']:.3f} > {report['threshold']} ({report['v2_version']})",
            report_id=report["id"]))
    return report


def reconcile_incidents() -> str:
    """breaker_alerts.reconcile_costsim_incidents, after the canary's run: what it did, or "failed" (logged; the next
    hour's run tries again, and the canary's own outcome stands)."""
    try:
        return reconcile_costsim_incidents()
    except Exception:  # noqa: BLE001 - best effort, hourly: DynamoDB or PostgreSQL may be down
        logger.exception("costsim incidents not reconciled")
        return "failed"


def reports(limit: int = 20) -> list[dict[str, Any]]:
    with transaction(tenant_id=None) as conn:
        return canary_reports(conn, limit)


# --------------------------------------------------------------------------- simulate and the V2 breaker


def simulate(tenant_id: str, request: SimulateRequest, breaker: V2Guard | None = None) -> dict[str, Any]:
    """V1 always; V2 unless its breaker is open. Provenance is stored and the drift reported."""
    guard = breaker or v2_guard()
    plan = request.plan
    v1 = simulate_v1(plan)
    v2 = simulate_v2(plan) if guard.allow() else None
    plan_drift = drift(v1.total_usd, v2.total_usd) if v2 else None
    served = v2 if v2 is not None else v1
    with transaction(tenant_id=tenant_id) as conn:
        new = store.record_provenance(
            conn, input_hash=plan.input_hash(), tenant_id=tenant_id, plan=plan.model_dump(mode="json"),
            v1_version=v1.version, v1_cost_usd=v1.total_usd, v2_version=v2.version if v2 else None,
            v2_cost_usd=v2.total_usd if v2 else None, drift=plan_drift, served="v2" if v2 else "v1")
    if plan_drift is not None:
        guard.report_drift(plan_drift)
    _emit_breaker_gauges(guard)
    answer: dict[str, Any] = {
        "input_hash": plan.input_hash(),
        "served": "v2" if v2 else "v1",
        "cost_usd": served.total_usd,
        "v1": v1.model_dump(),
        "v2": v2.model_dump() if v2 else None,
        "drift": plan_drift,
        "provenance_recorded": new,
    }
    if v2 is None:
        answer["note"] = "V2 is disabled by its circuit breaker; this is the V1 estimate"
    return answer


def _emit_breaker_gauges(guard: Any) -> None:
    """The gauges the seed's drift and breaker alarms watch, from the breaker's (cached) state."""
    try:
        current = guard.status(fresh=False)
        least = p95_min_samples(guard.config.rule)  # the breaker's own rule: over fewer, the p95 is the largest sample
    except Exception:  # noqa: BLE001 - a gauge is not worth failing a simulation for
        return
    if current.drift_p95 is not None and current.drift_samples >= (MIN_P95_SAMPLES if least is None else least):
        metrics.add_metric(name="CostSimDriftP95", unit=MetricUnit.NoUnit, value=current.drift_p95)
    metrics.add_metric(name="CostSimConsecutiveFailures", unit=MetricUnit.Count,
                       value=current.consecutive_drift_failures)
    metrics.add_metric(name="CostSimBreakerOpen", unit=MetricUnit.Count,
                       value=0 if current.state.value == "CLOSED" else 1)


def status() -> dict[str, Any]:
    """The V2 breaker, the drift p95 of the last hour's simulations, and the last CostSim incident."""
    # The breaker is global, so is its drift: every tenant's simulations.
    with transaction(tenant_id=None) as conn:
        recent = store.drift_last_hour(conn)
    return {
        "breaker": v2_guard().status().model_dump(mode="json"),
        "recent_drift_p95": recent["p95"] if recent else None,
        "recent_simulations": recent["n"] if recent else 0,
        "last_incident": last_costsim_incident(),
    }


def disable_v2(reason: str, by: str, until: Any = None) -> dict[str, Any]:
    return {"breaker": v2_guard().disable(reason, by, until).model_dump(mode="json")}


def enable_v2(by: str, reason: str | None = None) -> dict[str, Any]:
    return {"breaker": v2_guard().enable(by, reason).model_dump(mode="json")}


def health() -> tuple[dict[str, Any], int]:
    """The service's health and the HTTP status a load balancer or uptime check reads from it.

    503 when the catalog database does not answer (within its bounds): nothing works without it.
    Breaker states are reported, "unknown" when DynamoDB does not answer; the breakers then fall back
    to their fail modes and the service still serves, so that alone is "degraded", 200.
    """
    try:
        # Opening the transaction is the round trip: it sets its scope and bounds on the server.
        with transaction(tenant_id=None, statement_timeout_ms=1000, lock_timeout_ms=1000):
            pass
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports, it does not fail
        database = f"unavailable: {type(exc).__name__}"
    states: dict[str, Any] = {}
    for name in (breakers.COSTSIM_V2, breakers.CATALOG_PERSIST):
        try:
            states[name] = breakers.named(name).status().state.value
        except Exception as exc:  # noqa: BLE001
            states[name] = f"unknown: {type(exc).__name__}"
    if database != "ok":
        status = "unavailable"
    elif any(state.startswith("unknown") for state in states.values()):
        status = "degraded"
    else:
        status = "ok"
    return {"status": status, "database": database, "breakers": states}, 503 if status == "unavailable" else 200
