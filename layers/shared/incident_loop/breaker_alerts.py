"""What a breaker transition means to the rest of the product: alerts for everyone, incidents for CostSim.

Every breaker's trip raises a firing alert and its recovery resolves it (same labels): a P1 page, except for
the breaker of one tenant's own target (`skill:<tenant>/<target>`: its webhook endpoint, its Slack channel),
whose trip is that tenant's endpoint failing, a P3 labelled with the tenant. A costsim-v2
trip also opens a CostSim incident row and sends an incident into the loop's ingest queue, so the
loop learns from it; the incident key is the trip's version, so a retried hook adds nothing.

The hook's alert is sent once; what keeps Alertmanager right is the reconciler (reconcile(), every minute
on alert_worker's schedule): from the breakers as they are, it re-sends the firing alert of every breaker
not CLOSED and the resolution of every one that closed lately, and alert_worker drops a queued firing
alert whose breaker has closed since (stale()).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop import aws
from incident_loop.alerts import deliver, enqueue
from incident_loop.breaker import COSTSIM_V2, BreakerRecord, BreakerState, DynamoBreakerStore, Transition
from incident_loop.breaker.config import SKILL_PREFIX, split_skill_target
from incident_loop.breaker.state import p95
from incident_loop.db import transaction
from incident_loop.observability import logger, metrics
from incident_loop.schemas.alerts import Alert
from incident_loop.settings import get_settings
from incident_loop.stores import costsim as store

DOWN = (BreakerState.OPEN, BreakerState.DISABLED)


def _breaker_alert(breaker: str, state: BreakerState, reason: str | None, starts_at: datetime) -> Alert:
    summary = {"summary": f"{breaker} is {state.value}: {reason or 'no reason given'}"}
    if breaker.startswith(SKILL_PREFIX):
        target, tenant = split_skill_target(breaker[len(SKILL_PREFIX):])
        if tenant is not None:  # one tenant's own endpoint or channel is failing: the tenant's to fix, not a page
            return Alert(name="TenantTargetBreakerOpen", severity="P3",
                         labels={"breaker": breaker, "tenant": tenant, "target": target}, annotations=summary,
                         starts_at=starts_at)
    name = "CostSimV2CircuitBreakerOpen" if breaker == COSTSIM_V2 else "CircuitBreakerOpen"
    return Alert(name=name, severity="P1", labels={"breaker": breaker}, annotations=summary, starts_at=starts_at)


def alert_for(t: Transition, started: datetime | None = None) -> Alert:
    """The alert of a breaker being open (firing) — the same labels resolve it."""
    return _breaker_alert(t.breaker, t.to_state, t.reason, started or t.at)


# How long after a breaker closed the reconciler still sends its resolution (a hook that failed to send it,
# a firing alert redelivered after it).
RESOLVED_FOR_S = 15 * 60


def standing(records: Iterable[BreakerRecord], now: float) -> list[Alert]:
    """What Alertmanager should show, from the breakers as they are: a firing alert for each breaker that is
    not CLOSED (open, half-open or disabled), and the resolution of each that closed in the last RESOLVED_FOR_S,
    or that went idle then (open, and not called for IDLE_AFTER_S since its cooldown ended).

    Sent every minute by the reconciler (alert_worker's schedule), so an alert does not hang on the one message
    a transition's hook queued: a hook that failed once left an outage silent, and Alertmanager, which ends a
    firing alert nobody re-sends after its resolve_timeout (5 minutes by default), showed an open breaker as
    resolved.
    """
    alerts = []
    for record in records:
        state = record.effective_state(now)
        idle_since = _idle_since(record, state)
        if idle_since is not None and now >= idle_since:
            if now - idle_since <= RESOLVED_FOR_S:
                idle = _at(idle_since)
                alerts.append(_breaker_alert(record.name, BreakerState.OPEN, None, idle).resolved(
                    f"{record.name} has not been called since its cooldown ended; its next call probes it", idle))
        elif state != BreakerState.CLOSED:
            since = record.opened_at or record.changed_at or now
            alerts.append(_breaker_alert(record.name, state, record.reason, _at(since)))
        elif (closed_at := _closed_at(record)) is not None and now - closed_at <= RESOLVED_FOR_S:
            closed = _at(closed_at)
            alerts.append(_breaker_alert(record.name, BreakerState.OPEN, None, closed).resolved(
                f"{record.name} closed again ({record.reason or 'recovered'})", closed))
    return alerts


def stale(alert: Alert, record: BreakerRecord | None, now: float) -> bool:
    """Whether a firing breaker alert speaks of an outage that has ended since it was raised (a redelivered
    message): its breaker is CLOSED now, closed after the alert started."""
    if alert.ends_at is not None or "breaker" not in alert.labels or record is None:
        return False
    closed_at = _closed_at(record)
    return (record.effective_state(now) == BreakerState.CLOSED and closed_at is not None
            and closed_at >= alert.starts_at.timestamp())


def reconcile(store: DynamoBreakerStore | None = None, now: float | None = None) -> dict[str, int]:
    """Send Alertmanager what standing() says, in one request (the reconciler's run; AlertDeliveryFailed
    when Alertmanager does not take it: the next run sends it again)."""
    now = time.time() if now is None else now
    records = (store or DynamoBreakerStore()).all()
    _costsim_gauges(records, now)
    alerts = standing(records, now)
    if alerts:
        deliver(alerts)
    firing = sum(a.ends_at is None for a in alerts)
    logger.info("breaker alerts reconciled", firing=firing, resolved=len(alerts) - firing)
    return {"firing": firing, "resolved": len(alerts) - firing}


def _costsim_gauges(records: Iterable[BreakerRecord], now: float) -> None:
    """CostSim V2's state gauges, every minute from the breaker as DynamoDB holds it. Emitted only by simulations
    and transitions, an OPEN or DISABLED breaker's one-minute alarm read no data a minute after the last
    simulation, went OK (resolving its alert) and paged again on the next one."""
    for record in records:
        if record.name == COSTSIM_V2:
            state = record.effective_state(now)
            metrics.add_metric(name="CostSimBreakerOpen", unit=MetricUnit.Count,
                               value=0 if state == BreakerState.CLOSED else 1)
            metrics.add_metric(name="CostSimConsecutiveFailures", unit=MetricUnit.Count,
                               value=record.consecutive_drift_failures if state in DOWN else 0)


# An open breaker nobody has called for this long after its cooldown ended (its target no longer used: an endpoint a
# tenant dropped, a breaker renamed) says nothing about its target any more: its alert is resolved. The next call
# probes it, and a failure opens it again, with a new alert.
IDLE_AFTER_S = 60 * 60


def _idle_since(record: BreakerRecord, state: BreakerState) -> float | None:
    """When an OPEN or HALF_OPEN breaker went idle (IDLE_AFTER_S after its last change, its cooldown's end or its
    probe's deadline, whichever is last), or None for one in another state or with no times."""
    if state not in (BreakerState.OPEN, BreakerState.HALF_OPEN):
        return None
    moments = [t for t in (record.changed_at, record.cooldown_until, record.probe_deadline) if t is not None]
    return max(moments) + IDLE_AFTER_S if moments else None


def _closed_at(record: BreakerRecord) -> float | None:
    """When a breaker that reads CLOSED closed: its last change, or the end of a disable that expired."""
    if record.state is BreakerState.DISABLED:
        return record.disabled_until
    return record.changed_at


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def on_transition(t: Transition) -> None:
    """The hook every wired breaker calls after a transition it won."""
    # Going down is leaving CLOSED, and alerted; a failed half-open probe re-opens an outage already alerted and
    # filed. A trip is going down on the breaker's own rule (OPEN). An operator's disable (DISABLED) is not a failure:
    # alerted (V2 is off), but it files no incident for the loop to learn from and is no trip to count.
    down = t.to_state in DOWN and t.from_state == BreakerState.CLOSED
    tripped = down and t.to_state == BreakerState.OPEN
    recovered = t.to_state == BreakerState.CLOSED and t.from_state != BreakerState.CLOSED
    if t.breaker == COSTSIM_V2:
        _costsim_metrics(t, tripped, recovered)
    if down:
        try:
            enqueue(alert_for(t))  # first: a database that is down must not hold the page back
        finally:
            if tripped and t.breaker == COSTSIM_V2:
                _open_costsim_incident(t)
    elif recovered:
        started = _resolve_costsim_incident(t.breaker, t.at) if t.breaker == COSTSIM_V2 else None
        enqueue(alert_for(t, started).resolved(f"{t.breaker} closed again ({t.reason or 'recovered'})", t.at))


def _costsim_metrics(t: Transition, tripped: bool, recovered: bool) -> None:
    # 1 until it is CLOSED again (half-open is not recovered yet: standing() keeps its alert firing too).
    metrics.add_metric(name="CostSimBreakerOpen", unit=MetricUnit.Count,
                       value=0 if t.to_state == BreakerState.CLOSED else 1)
    # The streak that took it down (details hold the record before the transition); a breaker coming back up
    # (an enable, a cooldown's probe, a recovery) has none: the tripped streak would page P2 as V2 recovers.
    streak = int(t.details.get("consecutive_drift_failures", 0)) if t.to_state in DOWN else 0
    metrics.add_metric(name="CostSimConsecutiveFailures", unit=MetricUnit.Count, value=streak)
    if tripped:
        metrics.add_metric(name="CostSimBreakerDisabled", unit=MetricUnit.Count, value=1)
    if recovered:
        metrics.add_metric(name="CostSimBreakerEnabled", unit=MetricUnit.Count, value=1)
        if t.from_state == BreakerState.HALF_OPEN:
            metrics.add_metric(name="CostSimAutoRecoveries", unit=MetricUnit.Count, value=1)


def _open_costsim_incident(t: Transition, resolved_at: datetime | None = None) -> bool:
    """File the trip's incident (once per trip; resolved at `resolved_at` for a trip over when it is filed) and send
    it into the loop; whether this filed it."""
    trip_id = t.details.get("trip_id")
    key = f"{t.breaker}:trip:{trip_id or t.version}"
    drift_p95 = t.details.get("drift_p95")
    settings = get_settings()
    # costsim_incidents is global; CostSim's incidents belong to the ops tenant.
    with transaction(tenant_id=settings.ops_tenant_id) as conn:
        created = store.open_incident(conn, incident_id=f"csi_{uuid4().hex[:16]}", breaker=t.breaker,
                                      version=t.version, reason=t.reason or "tripped", drift_p95=drift_p95,
                                      loop_incident_key=key, opened_at=t.at, trip_id=trip_id, resolved_at=resolved_at)
    if created:
        metrics.add_metric(name="CostSimIncidents", unit=MetricUnit.Count, value=1)
        _send_costsim_incident(key, t.reason or "tripped", drift_p95, {
            "breaker": t.breaker, "version": t.version,
            **{k: v for k, v in t.details.items() if isinstance(v, (int, float, str))}})
    return created


def _send_costsim_incident(key: str, reason: str, drift_p95: float | None, context: dict[str, Any]) -> None:
    """The incident into the loop's ingest queue (ingest takes an incident key once: a repeat adds nothing)."""
    settings = get_settings()
    if not settings.incident_queue_url:
        logger.warning("no INCIDENT_QUEUE_URL: the CostSim incident is not sent into the loop", key=key)
        return
    message = {
        "tenant_id": settings.ops_tenant_id, "agent_id": "costsim", "run_id": key, "incident_key": key,
        "error_type": "CostSimV2Drift", "skill_id": "costsim", "severity": "high",
        "error_message": f"CostSim V2 circuit breaker opened: {reason}"
                         + (f" (drift p95 {drift_p95})" if drift_p95 is not None else ""),
        "context": context,
    }
    aws.sqs().send_message(QueueUrl=settings.incident_queue_url, MessageBody=json.dumps(message))
    logger.info("costsim incident sent into the loop", key=key)


def _resolve_costsim_incident(breaker: str, at: datetime) -> datetime | None:
    """Resolve the breaker's open incidents at `at`; when the first of them was opened."""
    with transaction(tenant_id=get_settings().ops_tenant_id) as conn:
        opened = store.resolve_incidents(conn, breaker, at)
    return min(opened, default=None)


def reconcile_costsim_incidents(breakers: DynamoBreakerStore | None = None, now: float | None = None) -> str:
    """CostSim's incident rows as the costsim-v2 breaker is (hourly, after the canary): a trip whose hook could not
    write its incident (PostgreSQL down at that moment; its page went out regardless) is filed then; an open
    incident is sent into the loop again (its hook's send may have failed; ingest takes its key once); an incident
    its recovery could not resolve is resolved. An operator's disable files nothing, as its hook does not. A trip
    over before the run (a short one) is seen by the trip id the breaker keeps: filed then, and resolved. Returns
    what it did: filed, resolved, or in step.

    The incidents are read before the breaker: a trip between the two reads is seen as a breaker down with its
    incident (if its hook filed it, the insert finds it), never as an incident to resolve; and a resolution covers
    only incidents of the breaker's version or before (a later trip's is not the closed breaker's).
    """
    now = time.time() if now is None else now
    with transaction(tenant_id=get_settings().ops_tenant_id) as conn:
        last = store.last_incident(conn, COSTSIM_V2)
    record = (breakers or DynamoBreakerStore()).get(COSTSIM_V2)
    state = record.effective_state(now) if record is not None else BreakerState.CLOSED
    open_row = last is not None and last["resolved_at"] is None
    if record is not None and state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
        if open_row:
            assert last is not None
            _send_costsim_incident(last["loop_incident_key"], last["reason"], last["drift_p95"],
                                   {"breaker": COSTSIM_V2, "version": last["breaker_version"]})
            return "in step"
        filed = _file_late(record, now)
        if filed:
            logger.warning("costsim incident filed late: its trip's hook did not file it", version=record.version)
        return "filed" if filed else "in step"
    if state == BreakerState.CLOSED and open_row and (record is None or last["breaker_version"] <= record.version):
        closed = _closed_at(record) if record is not None else None
        _resolve_costsim_incident(COSTSIM_V2, _at(closed or now))
        logger.warning("costsim incident resolved late: its recovery's hook did not resolve it")
        return "resolved"
    # A trip over before this run, filed resolved: resolving the breaker's open incidents afterwards would also resolve
    # a later trip's, filed by its hook since the breaker was read.
    if state == BreakerState.CLOSED and record is not None and record.trip_id and record.tripped_at \
            and now - record.tripped_at <= FILE_LATE_FOR_S \
            and _file_late(record, now, resolved_at=_at(_closed_at(record) or now)):
        logger.warning("costsim incident of a trip over before the run filed late", trip_id=record.trip_id)
        return "filed"
    return "in step"


# How long after a trip the reconciler still files it when the breaker has closed since (its runs are hourly).
FILE_LATE_FOR_S = 24 * 3600


def _file_late(record: BreakerRecord, now: float, resolved_at: datetime | None = None) -> bool:
    """The record's last trip filed as its hook would have (nothing when it was: one incident per trip). Of a trip
    over since, the version is the breaker's at its close, and the drift samples are gone (a close clears them)."""
    samples = record.drift_samples  # a trip keeps them: the p95 that tripped it, as its hook reports it
    details: dict[str, Any] = {"drift_p95": round(p95(samples), 6)} if samples else {}
    if record.trip_id:
        details["trip_id"] = record.trip_id
    return _open_costsim_incident(Transition(
        breaker=COSTSIM_V2, from_state=BreakerState.CLOSED, to_state=BreakerState.OPEN, version=record.version,
        reason="tripped (filed late: its hook could not)", changed_by="reconciler",
        at=_at(record.tripped_at or record.opened_at or record.changed_at or now), details=details), resolved_at)


def last_costsim_incident() -> dict[str, Any] | None:
    """CostSim V2's latest incident, open or resolved."""
    with transaction(tenant_id=get_settings().ops_tenant_id) as conn:
        return store.last_incident(conn, COSTSIM_V2)
