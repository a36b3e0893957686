"""Bridge 3: Recovery -> Policy. Every new policy starts in SHADOW and never stops the loop."""

from __future__ import annotations

from collections.abc import Sequence

from incident_loop.categories import category as failure_category
from incident_loop.loop.errors import NotReady
from incident_loop.loop.merges import current_pattern
from incident_loop.loop.outcome import StageOutcome
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.policy import PolicyRule
from incident_loop.settings import get_settings
from incident_loop.stores.ports import UnitOfWork


def read_ahead(uow: UnitOfWork, envs: Sequence[Envelope]) -> None:
    """For a batch of one tenant: its incidents, their recoveries, the recoveries' patterns and those
    patterns' policies (a policy that exists needs no insert), in four reads."""
    tenant = envs[0].tenant_id
    incidents = {env.incident_id for env in envs}
    uow.incidents.get_many(tenant, incidents)
    patterns = {recovery.pattern_id for recovery in uow.recoveries.for_incidents(tenant, incidents).values()}
    if patterns:
        # The patterns' keys held (shared) against Bridge 1 until this commits: a policy made for a pattern a merge
        # absorbs meanwhile would escape the merge's retirement (not committed when the merge looks). Bridge 1 holds
        # its keys alone (every batch, merges among them), so one under way is waited for, and the patterns are read
        # once it has committed (current_pattern then guards the survivor); a Bridge 1 batch of the same keys waits
        # for this one, as for another Bridge 1 batch. Keys, not rows: both bridges take keys first, in this order.
        rows = uow.patterns.get_many(tenant, patterns)
        uow.patterns.lock_keys(tenant, {(r["error_type"], r["candidate_key"]) for r in rows.values()}, shared=True)
        uow.patterns.get_many(tenant, patterns)
        uow.policies.for_patterns(tenant, patterns)


def generate_policy(uow: UnitOfWork, env: Envelope) -> StageOutcome:
    """Derive (or reuse) the tenant's policy for this pattern, in shadow mode, and hand on to routing."""
    incident = uow.incidents.get(env.tenant_id, env.incident_id)
    recovery = uow.recoveries.for_incident(env.tenant_id, env.incident_id)
    if incident is None or recovery is None or recovery.status not in ("approved", "applied"):
        raise NotReady(f"no approved recovery for incident {env.incident_id} yet")
    # The policy guards the pattern as it is now: the recovery's may have been merged into a sibling since.
    pattern = current_pattern(uow, env.tenant_id, recovery.pattern_id)
    assert pattern is not None  # recovery_candidates.source_pattern_id references it
    action, category = failure_category(pattern["category"]).policy
    condition = f"error_type == {incident['error_type']!r} and signature == {pattern['signature']!r}"
    policy, created = uow.policies.insert(
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
    # Shadow mode is recorded as a detail, never as a failure state: it must not stop the loop.
    return StageOutcome(
        {"policy": policy.to_dict(), "policy_mode": policy.mode.value, "created": created},
        hand_off={"policy_id": policy.policy_id},
        confidence_band=policy.confidence_band,
    )
