"""Policy lifecycle through the API: confirmations activate, regrets demote."""

from __future__ import annotations

from typing import Any

from incident_loop.db import transaction
from incident_loop.loop.errors import NotFound
from incident_loop.observability import logger
from incident_loop.schemas.api import PolicyFeedback
from incident_loop.schemas.loop_events import PolicyMode, PolicyRule
from incident_loop.settings import get_settings
from incident_loop.stores.policies import get_policy, list_policies, save_policy


def policies(tenant_id: str, mode: PolicyMode | None = None) -> list[PolicyRule]:
    with transaction(tenant_id=tenant_id) as conn:
        return list_policies(conn, tenant_id, mode)


def confirm_policy(tenant_id: str, policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    """Count a confirmation; enough of them move the policy from SHADOW to ACTIVE."""
    with transaction(tenant_id=tenant_id) as conn:
        policy = _locked(conn, tenant_id, policy_id)
        before = policy.mode
        policy.add_confirmation()
        save_policy(conn, tenant_id, policy)
    logger.info("policy confirmed", policy_id=policy_id, by=feedback.by, mode=policy.mode.value)
    return {"policy": policy.to_dict(), "activated": before != PolicyMode.ACTIVE == policy.mode}


def regret_policy(tenant_id: str, policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    """Count a regret; past the threshold an ACTIVE policy goes back to SHADOW."""
    with transaction(tenant_id=tenant_id) as conn:
        policy = _locked(conn, tenant_id, policy_id)
        demoted = policy.record_regret(threshold=get_settings().policy_regret_threshold)
        save_policy(conn, tenant_id, policy)
    logger.info("policy regret recorded", policy_id=policy_id, by=feedback.by, demoted=demoted,
                reason=feedback.reason)
    return {"policy": policy.to_dict(), "demoted": demoted}


def _locked(conn: Any, tenant_id: str, policy_id: str) -> PolicyRule:
    policy = get_policy(conn, tenant_id, policy_id)
    if policy is None:
        raise NotFound(f"policy {policy_id} not found")
    return policy
