"""What Bridge 1's merge of sibling patterns (matcher.GroupingConfig.merge_after) means for the rest of the loop.

The absorbed patterns' rows stay, naming the survivor in merged_into, for what named them before the merge: a
hand-off in flight, a recovery made before it. The later bridges read them as they are now (current_pattern). The
policies confirmed on the narrower groups stop acting without a person (policies_after_merge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from incident_loop.loop.policies import announce_demotion
from incident_loop.observability import logger
from incident_loop.schemas.loop.enums import PolicyMode
from incident_loop.stores.ports import UnitOfWork

# Merges are flattened as they happen (stores/patterns.py ABSORB_SQL): one hop, at most a few for rows merged before.
MAX_MERGE_HOPS = 8


def current_pattern(uow: UnitOfWork, tenant_id: str, pattern_id: str) -> dict[str, Any] | None:
    """The tenant's pattern as it is now: the one it was merged into if Bridge 1 has merged it since it was
    named (a hand-off in flight, a recovery made before the merge), else itself; None if there is none."""
    pattern = uow.patterns.get(tenant_id, pattern_id)
    for _ in range(MAX_MERGE_HOPS):
        if pattern is None or not pattern.get("merged_into"):
            return pattern
        pattern = uow.patterns.get(tenant_id, pattern["merged_into"])
    raise LookupError(f"pattern {pattern_id} of tenant {tenant_id}: more than {MAX_MERGE_HOPS} merges to follow")


def policies_after_merge(uow: UnitOfWork, tenant_id: str, survivor: str, absorbed: Sequence[str]) -> None:
    """Bridge 1 merged siblings into the survivor: no policy confirmed on one of the narrower groups acts on the
    merged one without a person. The survivor's, if ACTIVE, returns to SHADOW (PolicyRule.widen); an absorbed
    pattern's is DISABLED (PolicyRule.retire): its incidents now meet the survivor's. Locked, as a person's
    confirmation locks them."""
    found = uow.policies.for_patterns(tenant_id, {survivor, *absorbed})
    if not found:
        return
    for policy in uow.policies.get_many(tenant_id, {p.policy_id for p in found.values()}).values():
        was, activated_at = policy.mode, policy.activated_at
        if policy.widen() if policy.source_pattern_id == survivor else policy.retire():
            uow.policies.save(tenant_id, policy)
            logger.warning("policy changed by a pattern merge", policy_id=policy.policy_id, was=was.value,
                           now=policy.mode.value, pattern_id=policy.source_pattern_id, merged_into=survivor)
            if was == PolicyMode.ACTIVE:
                why = ("its pattern absorbed sibling patterns; confirm it again to act on all of them"
                       if policy.source_pattern_id == survivor else f"its pattern was merged into {survivor}")
                announce_demotion(uow, tenant_id, policy, activated_at, why)
