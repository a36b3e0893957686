"""Bridge 4: Policy -> Routing. Bounded, decaying adjustments that roll back when the KPI regresses."""

from __future__ import annotations

from collections.abc import Sequence

from incident_loop.categories import ADJUSTMENTS
from incident_loop.loop.errors import NotReady
from incident_loop.loop.outcome import StageOutcome
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import Severity
from incident_loop.schemas.loop.policy import RoutingAdjustment
from incident_loop.settings import get_settings
from incident_loop.stores.ports import UnitOfWork

STEP_PER_SEVERITY = 0.05


def read_ahead(uow: UnitOfWork, envs: Sequence[Envelope]) -> None:
    """For a batch of one tenant: its incidents, their policies (locked, as get() locks them) and the
    latest KPI of their agents, in three reads."""
    tenant = envs[0].tenant_id
    incidents = uow.incidents.get_many(tenant, {env.incident_id for env in envs})
    uow.policies.get_many(tenant, {str(env.payload.get("policy_id", "")) for env in envs})
    if incidents:
        uow.routing.latest_kpis(tenant, {row["agent_id"] for row in incidents.values()})


def adjust_routing(uow: UnitOfWork, env: Envelope) -> StageOutcome:
    """Adjust how much work the failing agent gets; the loop is complete afterwards."""
    incident = uow.incidents.get(env.tenant_id, env.incident_id)
    policy = uow.policies.get(env.tenant_id, env.payload.get("policy_id", ""))
    if incident is None or policy is None:
        raise NotReady(f"policy for incident {env.incident_id} is not stored yet")
    settings = get_settings()
    severity = Severity(incident["severity"])
    adjustment, created = uow.routing.insert(
        env.tenant_id,
        env.incident_id,
        RoutingAdjustment.create(
            agent_id=incident["agent_id"],
            adjustment_type=ADJUSTMENTS[policy.action],
            magnitude=-STEP_PER_SEVERITY * severity.weight,
            reason=f"policy {policy.policy_id} ({policy.action}) after {incident['error_type']}",
            source_policy_id=policy.policy_id,
            capability=incident["skill_id"],
            max_delta=settings.routing_max_delta,
            decay_days=settings.routing_decay_days,
            rollback_threshold=settings.routing_rollback_threshold,
            kpi_baseline=uow.routing.latest_kpi(env.tenant_id, incident["agent_id"]),
        ),
    )
    uow.incidents.set_status(env.tenant_id, env.incident_id, "learned")
    # Handing on from the last stage completes the loop.
    return StageOutcome({"routing": adjustment.to_dict(), "created": created}, hand_off={})
