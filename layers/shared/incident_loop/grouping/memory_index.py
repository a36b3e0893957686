"""An in-memory PatternIndex: the rules' reference beside the PostgreSQL one (unit tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

from incident_loop.grouping.compare import merge
from incident_loop.grouping.matcher import (
    MAX_CANDIDATES,
    MatchDecision,
    PatternCandidate,
    decision_arg,
    exact_confidence,
)


class MemoryPatternIndex:
    """An in-memory PatternIndex with the same semantics as the PostgreSQL one."""

    def __init__(self) -> None:
        # Each pattern lives in a cell, a one-item list holding it as it is now (its count kept up to
        # date): every signature of the pattern and its candidate key point at the cell, so a merge
        # updates them all at once.
        self._signatures: dict[tuple[str, str], list[PatternCandidate]] = {}
        self._by_key: dict[tuple[str, str, str], list[list[PatternCandidate]]] = {}
        self._cells: dict[str, list[PatternCandidate]] = {}
        self._merged_into: dict[str, str] = {}  # an absorbed pattern -> the one it was merged into
        self._next = 0

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None:
        cell = self._signatures.get((tenant_id, signature))
        return None if cell is None else cell[0]

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]:
        cells = self._by_key.get((tenant_id, error_type, candidate_key), ())
        return [c for c, in cells[:MAX_CANDIDATES]]  # oldest first

    def template(self, pattern_id: str) -> str:
        return self._cells[pattern_id][0].template

    def count(self, pattern_id: str) -> int:
        """The pattern's members so far."""
        return self._cells[pattern_id][0].count

    def resolve(self, pattern_id: str) -> str:
        """The pattern a recorded id belongs to now: itself, or the one it was merged into (transitively)."""
        while pattern_id in self._merged_into:
            pattern_id = self._merged_into[pattern_id]
        return pattern_id

    @overload
    def record(self, tenant_id: str, decision: MatchDecision, /) -> str: ...

    @overload
    def record(self, tenant_id: str, error_type: str, decision: MatchDecision, /) -> str: ...

    def record(self, tenant_id: str, decision: Any, legacy: Any = None, /) -> str:
        """Apply a decision (what record_match does in PostgreSQL); returns the pattern id.

        Also accepts the older (tenant_id, error_type, decision)."""
        if legacy is not None:
            decision = decision_arg((decision, legacy))
        pattern_id = decision.pattern_id
        if decision.match_type == "exact" and pattern_id is not None:  # the common case: only the count
            cell = self._cells[pattern_id]
            cell[0].count += 1
            if decision.new_alias:
                self._signatures.setdefault((tenant_id, decision.signature), cell)
            return pattern_id
        if pattern_id is None:
            known = self._signatures.get((tenant_id, decision.signature))
            if known is not None:  # recorded since the decision was made: join it, as record_match does
                return self.record(tenant_id, MatchDecision("exact", known[0].pattern_id,
                                                            exact_confidence(decision.template), decision.signature,
                                                            decision.template, decision.template,
                                                            decision.error_type, decision.message))
            self._next += 1
            pattern_id = f"pat_{self._next:016x}"
            cell = self._cells[pattern_id] = [PatternCandidate(pattern_id, decision.template, decision.tokens)]
            self._by_key.setdefault((tenant_id, decision.error_type, decision.candidate_key), []).append(cell)
        else:  # fuzzy: generalise against the template as it is now
            cell = self._cells[pattern_id]
            # A template that already covers the message (the decision's merge left it as it was) stays.
            if decision.match_type == "fuzzy" and decision.merged_template != cell[0].template:
                merged = tuple(merge(decision.cover, cell[0].template_tokens()))
                cell[0] = PatternCandidate(pattern_id, " ".join(merged), merged, cell[0].count)
            if decision.absorbed:
                self._absorb(tenant_id, decision, cell)
        self._signatures.setdefault((tenant_id, decision.signature), cell)
        cell[0].count += 1
        return pattern_id

    def _absorb(self, tenant_id: str, decision: MatchDecision, cell: list[PatternCandidate]) -> None:
        """Merge the decision's absorbed siblings into its pattern (as record_match does in PostgreSQL): their
        signatures point at it, their members count for it, and they are no longer candidates."""
        gone = [self._cells[a] for a in decision.absorbed if a not in self._merged_into]
        if not gone:
            return
        ids = {id(c) for c in gone}
        for key, found in self._signatures.items():
            if id(found) in ids:
                self._signatures[key] = cell
        key = (tenant_id, decision.error_type, decision.candidate_key)
        self._by_key[key] = [c for c in self._by_key.get(key, []) if id(c) not in ids]
        cell[0].count += sum(c[0].count for c in gone)
        for c in gone:
            self._merged_into[c[0].pattern_id] = cell[0].pattern_id
