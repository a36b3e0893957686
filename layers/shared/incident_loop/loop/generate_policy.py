"""Bridge 3: Recovery -> Policy. Every new policy starts in SHADOW and never stops the loop."""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from incident_loop.loop.errors import NotReady
from incident_loop.loop.stage import StageOutcome, hand_off
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import LoopStage, PolicyRule
from incident_loop.settings import get_settings
from incident_loop.stores.incidents import get_incident
from incident_loop.stores.loop_store import record_stage
from incident_loop.stores.patterns import get_pattern
from incident_loop.stores.policies import insert_policy
from incident_loop.stores.recoveries import recovery_for_incident

STAGE = LoopStage.POLICY_GENERATED

# What a policy does about a failure category, and which policy family it belongs to.
ACTIONS = {
    "policy": ("block", "safety"),
    "auth": ("block", "safety"),
    "validation": ("warn", "operational"),
    "rate_limit": ("rate_limit", "operational"),
    "resource": ("route_away", "operational"),
    "timeout": ("route_away", "routing"),
    "http_error": ("route_away", "routing"),
}
DEFAULT_ACTION = ("escalate", "custom")


def generate_policy(conn: Connection[Any], env: Envelope) -> StageOutcome:
    """Derive (or reuse) the tenant's policy for this pattern, in shadow mode, and hand on to routing."""
    incident = get_incident(conn, env.tenant_id, env.incident_id)
    recovery = recovery_for_incident(conn, env.tenant_id, env.incident_id)
    if incident is None or recovery is None or recovery.status not in ("approved", "applied"):
        raise NotReady(f"no approved recovery for incident {env.incident_id} yet")
    pattern = get_pattern(conn, env.tenant_id, recovery.pattern_id)
    assert pattern is not None  # recovery_candidates.source_pattern_id references it
    action, category = ACTIONS.get(pattern["category"], DEFAULT_ACTION)
    condition = f"error_type == {incident['error_type']!r} and signature == {pattern['signature']!r}"
    policy, created = insert_policy(
        conn,
        env.tenant_id,
        PolicyRule.create(
            name=f"{pattern['category']} guard for {pattern['id']}",
            description=f"{action} runs that fail like: {pattern['template'][:200]}",
            category=category,
            condition=condition,
            action=action,
            source_pattern_id=pattern["id"],
            source_recovery_id=recovery.recovery_id,
            confidence=recovery.confidence,
            confirmations_required=get_settings().policy_confirmations_required,
        ),
        {"pattern_id": pattern["id"], "error_type": incident["error_type"], "signature": pattern["signature"]},
    )
    result = {
        "policy": policy.to_dict(),
        "policy_mode": policy.mode.value,
        "created": created,
        "next": hand_off(LoopStage.ROUTING_ADJUSTED, policy_id=policy.policy_id),
    }
    # Shadow mode is recorded as a detail, never as a failure state: it must not stop the loop.
    record_stage(
        conn,
        env.event(STAGE, result, confidence_band=policy.confidence_band),
    )
    return StageOutcome(result, [env.next(LoopStage.ROUTING_ADJUSTED, policy_id=policy.policy_id)])
