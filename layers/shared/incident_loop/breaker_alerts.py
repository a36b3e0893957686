"""What a breaker transition means to the rest of the product: alerts for everyone, incidents for CostSim.

Every breaker's trip raises a firing alert and its recovery resolves it (same labels). A costsim-v2
trip also opens a CostSim incident row and sends an incident into the loop's ingest queue, so the
loop learns from it; the incident key is the trip's version, so a retried hook adds nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import uuid4

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop import aws
from incident_loop.alerts import enqueue
from incident_loop.breaker import COSTSIM_V2, BreakerState, Transition
from incident_loop.db import transaction
from incident_loop.observability import logger, metrics
from incident_loop.schemas.alerts import Alert
from incident_loop.settings import get_settings
from incident_loop.stores import costsim as store

DOWN = (BreakerState.OPEN, BreakerState.DISABLED)


def alert_for(t: Transition, started: datetime | None = None) -> Alert:
    """The alert of a breaker being open (firing) — the same labels resolve it."""
    name = "CostSimV2CircuitBreakerOpen" if t.breaker == COSTSIM_V2 else "CircuitBreakerOpen"
    return Alert(name=name, severity="P1", labels={"breaker": t.breaker},
                 annotations={"summary": f"{t.breaker} is {t.to_state.value}: {t.reason or 'no reason given'}"},
                 starts_at=started or t.at)


def on_transition(t: Transition) -> None:
    """The hook every wired breaker calls after a transition it won."""
    # A trip is leaving CLOSED; a failed half-open probe re-opens an outage already alerted and filed.
    tripped = t.to_state in DOWN and t.from_state == BreakerState.CLOSED
    recovered = t.to_state == BreakerState.CLOSED and t.from_state != BreakerState.CLOSED
    if t.breaker == COSTSIM_V2:
        _costsim_metrics(t, tripped, recovered)
    if tripped:
        if t.breaker == COSTSIM_V2:
            _open_costsim_incident(t)
        enqueue(alert_for(t))
    elif recovered:
        started = _resolve_costsim_incident(t) if t.breaker == COSTSIM_V2 else None
        enqueue(alert_for(t, started).resolved(f"{t.breaker} closed again ({t.reason or 'recovered'})", t.at))


def _costsim_metrics(t: Transition, tripped: bool, recovered: bool) -> None:
    metrics.add_metric(name="CostSimBreakerOpen", unit=MetricUnit.Count, value=1 if t.to_state in DOWN else 0)
    metrics.add_metric(name="CostSimConsecutiveFailures", unit=MetricUnit.Count,
                       value=int(t.details.get("consecutive_drift_failures", 0)))
    if tripped:
        metrics.add_metric(name="CostSimBreakerDisabled", unit=MetricUnit.Count, value=1)
    if recovered:
        metrics.add_metric(name="CostSimBreakerEnabled", unit=MetricUnit.Count, value=1)
        if t.from_state == BreakerState.HALF_OPEN:
            metrics.add_metric(name="CostSimAutoRecoveries", unit=MetricUnit.Count, value=1)


def _open_costsim_incident(t: Transition) -> None:
    key = f"{t.breaker}:trip:{t.version}"
    drift_p95 = t.details.get("drift_p95")
    settings = get_settings()
    # costsim_incidents is global; CostSim's incidents belong to the ops tenant.
    with transaction(tenant_id=settings.ops_tenant_id) as conn:
        created = store.open_incident(conn, incident_id=f"csi_{uuid4().hex[:16]}", breaker=t.breaker,
                                      version=t.version, reason=t.reason or "tripped", drift_p95=drift_p95,
                                      loop_incident_key=key, opened_at=t.at)
    if not created:
        return
    metrics.add_metric(name="CostSimIncidents", unit=MetricUnit.Count, value=1)
    if not settings.incident_queue_url:
        logger.warning("no INCIDENT_QUEUE_URL: the CostSim incident is not sent into the loop", key=key)
        return
    message = {
        "tenant_id": settings.ops_tenant_id, "agent_id": "costsim", "run_id": key, "incident_key": key,
        "error_type": "CostSimV2Drift", "skill_id": "costsim", "severity": "high",
        "error_message": f"CostSim V2 circuit breaker opened: {t.reason or 'tripped'}"
                         + (f" (drift p95 {drift_p95})" if drift_p95 is not None else ""),
        "context": {"breaker": t.breaker, "version": t.version, **{k: v for k, v in t.details.items()
                                                                    if isinstance(v, (int, float, str))}},
    }
    aws.sqs().send_message(QueueUrl=settings.incident_queue_url, MessageBody=json.dumps(message))
    logger.info("costsim incident opened", key=key)


def _resolve_costsim_incident(t: Transition) -> datetime | None:
    with transaction(tenant_id=get_settings().ops_tenant_id) as conn:
        opened = store.resolve_incidents(conn, t.breaker, t.at)
    return min(opened, default=None)


def last_costsim_incident() -> dict[str, Any] | None:
    """CostSim V2's latest incident, open or resolved."""
    with transaction(tenant_id=get_settings().ops_tenant_id) as conn:
        return store.last_incident(conn, COSTSIM_V2)
