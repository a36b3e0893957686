"""Where a loop stands (LoopStatus) and the graduation gates of the whole product."""

from __future__ import annotations

from typing import Any

from incident_loop.loop.errors import NotFound
from incident_loop.loop.registry import STAGES
from incident_loop.loop.wiring import unit_of_work
from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage
from incident_loop.schemas.loop.status import LoopStatus
from incident_loop.stores.ports import UnitOfWork


def loop_status(tenant_id: str, incident_id: str, *, uow: UnitOfWork | None = None) -> LoopStatus:
    """The LoopStatus of an incident's loop, from its trace: each stage's result where the registry says."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        trace = uow.loop.trace(tenant_id, incident_id)
        if trace is None:
            raise NotFound(f"no loop for incident {incident_id}")
        current = _current(uow, tenant_id, trace["stage_results"])
    results = trace["stage_results"]
    status = LoopStatus(
        loop_id=trace["loop_id"],
        incident_id=incident_id,
        tenant_id=tenant_id,
        current_stage=LoopStage(trace["current_stage"]),
        stages_completed=list(trace["stages_completed"]),
        stages_failed=list(trace["stages_failed"]),
        started_at=trace["started_at"],
        completed_at=trace["completed_at"],
        is_complete=trace["is_complete"],
        is_blocked=trace["is_blocked"],
        failure_state=LoopFailureState(trace["failure_state"]) if trace["failure_state"] else None,
        pending_checkpoints=list(trace["pending_checkpoints"]),
        **{entry.result.status_field: entry.result.read(results.get(entry.stage.value)) for entry in STAGES},
    )
    return status.model_copy(update=current)


def _current(uow: UnitOfWork, tenant_id: str, results: dict[str, Any]) -> dict[str, Any]:
    """The loop's policy and routing adjustment as they are now, where the stages' results hold them as they
    were made: confirmations, regrets and KPI rollbacks change them after the loop (GET /loops reported an
    activated policy as shadow, a rolled-back adjustment as in force)."""
    current: dict[str, Any] = {}
    policy = (results.get(LoopStage.POLICY_GENERATED.value) or {}).get("policy")
    if policy and policy.get("policy_id"):
        found = uow.policies.get(tenant_id, policy["policy_id"])
        if found is not None:
            current["policy_rule"] = found
    adjustment = (results.get(LoopStage.ROUTING_ADJUSTED.value) or {}).get("routing")
    if adjustment and adjustment.get("agent_id"):
        by_id = {a.adjustment_id: a for a in uow.routing.for_agent(tenant_id, adjustment["agent_id"])}
        if adjustment.get("adjustment_id") in by_id:
            current["routing_adjustment"] = by_id[adjustment["adjustment_id"]]
    return current


def graduation(tenant_id: str, *, uow: UnitOfWork | None = None) -> dict[str, Any]:
    """The three gates: a loop completed end to end, a policy activated, a prevention recorded. Each is history: a
    policy demoted since (regrets, a pattern merge) still passes the second (its first activation is kept)."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        loop = uow.loop.first_complete(tenant_id)
        policy = uow.policies.first_activated(tenant_id)
        prevention = uow.policies.first_prevention(tenant_id)
    gates = [
        {"gate": "loop_completed", "passed": loop is not None, "evidence": dict(loop) if loop else None},
        {"gate": "policy_activated", "passed": policy is not None,
         "evidence": {"policy_id": policy["id"]} if policy else None},
        {"gate": "prevention_recorded", "passed": prevention is not None,
         "evidence": dict(prevention) if prevention else None},
    ]
    passed = sum(g["passed"] for g in gates)
    return {"tenant_id": tenant_id, "gates": gates, "passed": passed, "total": len(gates),
            "graduated": passed == len(gates)}
