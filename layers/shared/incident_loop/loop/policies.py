"""Policy lifecycle through the API: confirmations activate, regrets demote."""

from __future__ import annotations

from typing import Any

from incident_loop.loop.announce import announce, announce_demotion
from incident_loop.loop.errors import NotFound
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger
from incident_loop.schemas.loop.enums import NotificationEvent, PolicyMode
from incident_loop.schemas.loop.policy import PolicyRule
from incident_loop.schemas.loop.requests import PolicyFeedback
from incident_loop.settings import get_settings
from incident_loop.stores.ports import UnitOfWork


def policies(tenant_id: str, mode: PolicyMode | None = None, *, uow: UnitOfWork | None = None) -> list[PolicyRule]:
    """The tenant's policies, oldest first, optionally of one mode."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        return uow.policies.of_tenant(tenant_id, mode)


def confirm_policy(tenant_id: str, policy_id: str, feedback: PolicyFeedback, *,
                   uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Count a confirmation; enough of them move the policy from SHADOW to ACTIVE (announced to the tenant's
    targets, if it has any)."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        policy = _locked(uow, tenant_id, policy_id)
        before = policy.mode
        policy.add_confirmation()
        uow.policies.save(tenant_id, policy)
        activated = before != PolicyMode.ACTIVE == policy.mode
        if activated and policy.activated_at is not None:
            _announce_activation(uow, tenant_id, policy, feedback.by)
    logger.info("policy confirmed", policy_id=policy_id, by=feedback.by, mode=policy.mode.value)
    return {"policy": policy.to_dict(), "activated": activated}


def _announce_activation(uow: UnitOfWork, tenant_id: str, policy: PolicyRule, by: str | None) -> None:
    """A signed webhook (and Slack, if configured) for each activation: once per policy and activation time."""
    assert policy.activated_at is not None
    when = policy.activated_at.isoformat()
    announce(uow, tenant_id, NotificationEvent.POLICY_ACTIVATED, f"{policy.policy_id}@{when}",
             text=f"Policy {policy.policy_id} is now active: {policy.action} on {policy.scope_type} {policy.scope_id}",
             occurred_at=when,
             data={"policy_id": policy.policy_id, "action": policy.action, "scope_type": policy.scope_type,
                   "scope_id": policy.scope_id, "source_pattern_id": policy.source_pattern_id,
                   "confirmed_by": by})


def regret_policy(tenant_id: str, policy_id: str, feedback: PolicyFeedback, *,
                  uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Count a regret; past the threshold an ACTIVE policy goes back to SHADOW (announced, as its activation was)."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        policy = _locked(uow, tenant_id, policy_id)
        activated_at = policy.activated_at
        demoted = policy.record_regret(threshold=get_settings().policy_regret_threshold)
        uow.policies.save(tenant_id, policy)
        if demoted:
            announce_demotion(uow, tenant_id, policy, activated_at,
                              f"{policy.regret_count} regrets since its activation", feedback.by)
    logger.info("policy regret recorded", policy_id=policy_id, by=feedback.by, demoted=demoted,
                reason=feedback.reason)
    return {"policy": policy.to_dict(), "demoted": demoted}


def _locked(uow: UnitOfWork, tenant_id: str, policy_id: str) -> PolicyRule:
    policy = uow.policies.get(tenant_id, policy_id)
    if policy is None:
        raise NotFound(f"policy {policy_id} not found")
    return policy
