"""Where a loop stands (LoopStatus) and the graduation gates of the whole product."""

from __future__ import annotations

from typing import Any

from incident_loop.db import transaction
from incident_loop.loop.errors import NotFound
from incident_loop.schemas.loop_events import (
    LoopFailureState,
    LoopStage,
    LoopStatus,
    PatternMatchResult,
    PolicyRule,
    RecoverySuggestion,
    RoutingAdjustment,
)
from incident_loop.stores.loop_store import get_trace


def _nested(results: dict[str, Any], stage: LoopStage, key: str, model: Any) -> Any:
    value = (results.get(stage.value) or {}).get(key)
    return None if value is None else model.model_validate(value)


def loop_status(tenant_id: str, incident_id: str) -> LoopStatus:
    """The LoopStatus of an incident's loop, from its trace."""
    with transaction(tenant_id=tenant_id) as conn:
        trace = get_trace(conn, tenant_id, incident_id)
    if trace is None:
        raise NotFound(f"no loop for incident {incident_id}")
    results = trace["stage_results"]
    return LoopStatus(
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
        pattern_match_result=_nested(results, LoopStage.PATTERN_MATCHED, "match_result", PatternMatchResult),
        recovery_suggestion=_nested(results, LoopStage.RECOVERY_SUGGESTED, "recovery", RecoverySuggestion),
        policy_rule=_nested(results, LoopStage.POLICY_GENERATED, "policy", PolicyRule),
        routing_adjustment=_nested(results, LoopStage.ROUTING_ADJUSTED, "routing", RoutingAdjustment),
    )


def graduation(tenant_id: str) -> dict[str, Any]:
    """The three gates: a loop completed end to end, a policy activated, a prevention recorded."""
    with transaction(tenant_id=tenant_id) as conn:
        loop = conn.execute(
            "SELECT loop_id, incident_id FROM loop_traces WHERE tenant_id = %(t)s AND is_complete"
            " ORDER BY completed_at LIMIT 1",
            {"t": tenant_id},
        ).fetchone()
        policy = conn.execute(
            "SELECT id FROM policy_rules WHERE tenant_id = %(t)s AND activated_at IS NOT NULL"
            " ORDER BY activated_at LIMIT 1",
            {"t": tenant_id},
        ).fetchone()
        prevention = conn.execute(
            "SELECT id, blocked_incident_id, policy_id FROM prevention_records WHERE tenant_id = %(t)s"
            " ORDER BY created_at LIMIT 1",
            {"t": tenant_id},
        ).fetchone()
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
