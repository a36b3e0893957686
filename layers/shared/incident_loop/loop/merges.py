"""What Bridge 1's merge of sibling patterns (matcher.GroupingConfig.merge_after) means for the rest of the loop.

The absorbed patterns' rows stay, naming the survivor in merged_into, for what named them before the merge: a
hand-off in flight, a recovery made before it. The later bridges read them as they are now (current_pattern). The
policies confirmed on the narrower groups stop acting without a person (match_pattern's _policies_after_merge).
"""

from __future__ import annotations

from typing import Any

from incident_loop.stores.ports import UnitOfWork


def current_pattern(uow: UnitOfWork, tenant_id: str, pattern_id: str) -> dict[str, Any] | None:
    """The tenant's pattern as it is now: the one it was merged into if Bridge 1 has merged it since it was
    named (a hand-off in flight, a recovery made before the merge), else itself; None if there is none. Merges are
    flattened as they happen (stores/patterns.py ABSORB_SQL, and migration 0024 for those made before): one hop."""
    pattern, seen = uow.patterns.get(tenant_id, pattern_id), {pattern_id}
    while pattern is not None and pattern.get("merged_into"):
        if pattern["merged_into"] in seen:  # a merge points at a live pattern: a cycle is corrupt data
            raise LookupError(f"pattern {pattern_id} of tenant {tenant_id}: its merges go round in a circle")
        seen.add(pattern["merged_into"])
        pattern = uow.patterns.get(tenant_id, pattern["merged_into"])
    return pattern
