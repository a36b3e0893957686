"""Bridge 4: Policy -> Routing. Bounded, decaying adjustments that roll back when the KPI regresses."""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from incident_loop.loop.errors import NotReady
from incident_loop.loop.stage import StageOutcome
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import Severity
from incident_loop.schemas.loop_events import LoopStage, RoutingAdjustment
from incident_loop.settings import get_settings
from incident_loop.stores.incidents import get_incident, set_status
from incident_loop.stores.loop_store import record_stage
from incident_loop.stores.policies import get_policy
from incident_loop.stores.routing import insert_adjustment, latest_kpi

STAGE = LoopStage.ROUTING_ADJUSTED

ADJUSTMENT_TYPES = {
    "block": "route_block",
    "route_away": "weight_shift",
    "escalate": "escalation_add",
    "rate_limit": "confidence_penalty",
    "warn": "confidence_penalty",
}
STEP_PER_SEVERITY = 0.05


def adjust_routing(conn: Connection[Any], env: Envelope) -> StageOutcome:
    """Adjust how much work the failing agent gets; the loop is complete afterwards."""
    incident = get_incident(conn, env.tenant_id, env.incident_id)
    policy = get_policy(conn, env.tenant_id, env.payload.get("policy_id", ""))
    if incident is None or policy is None:
        raise NotReady(f"policy for incident {env.incident_id} is not stored yet")
    settings = get_settings()
    severity = Severity(incident["severity"])
    adjustment, created = insert_adjustment(
        conn,
        env.tenant_id,
        env.incident_id,
        RoutingAdjustment.create(
            agent_id=incident["agent_id"],
            adjustment_type=ADJUSTMENT_TYPES[policy.action],
            magnitude=-STEP_PER_SEVERITY * severity.weight,
            reason=f"policy {policy.policy_id} ({policy.action}) after {incident['error_type']}",
            source_policy_id=policy.policy_id,
            capability=incident["skill_id"],
            max_delta=settings.routing_max_delta,
            decay_days=settings.routing_decay_days,
            rollback_threshold=settings.routing_rollback_threshold,
            kpi_baseline=latest_kpi(conn, env.tenant_id, incident["agent_id"]),
        ),
    )
    result = {"routing": adjustment.to_dict(), "created": created, "next": None}
    record_stage(
        conn,
        env.event(STAGE, result),
        loop_complete=True,
    )
    set_status(conn, env.tenant_id, env.incident_id, "learned")
    return StageOutcome(result, [])
