"""Patterns, recoveries, policies and routing, in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from incident_loop.grouping.matcher import MatchDecision, PatternCandidate
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.schemas.loop.enums import PolicyMode
from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
from incident_loop.schemas.loop.results import RecoverySuggestion


class MemoryPatternStore:
    """The matcher's MemoryPatternIndex, with the rows and the once-per-incident count of record_match."""

    def __init__(self) -> None:
        self.index = MemoryPatternIndex()
        self.rows: dict[str, dict[str, Any]] = {}  # by pattern id
        self.occurrences: dict[str, str] = {}  # incident id -> pattern id

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None:
        return self.index.by_signature(tenant_id, signature)

    def by_signatures(self, tenant_id: str, signatures: Collection[str]) -> dict[str, PatternCandidate]:
        return {s: hit for s in signatures if (hit := self.by_signature(tenant_id, s)) is not None}

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]:
        return self.index.candidates(tenant_id, error_type, candidate_key)

    def lock_keys(self, tenant_id: str, keys: Collection[tuple[str, str]], shared: bool = False) -> None:
        """One process, one batch at a time: nothing to lock."""

    def get(self, tenant_id: str, pattern_id: str) -> dict[str, Any] | None:
        row = self.rows.get(pattern_id)
        if row is None or row["tenant_id"] != tenant_id:
            return None
        now = self.index.resolve(pattern_id)  # merged_into, flattened as PostgreSQL flattens it
        return {**row, "template": self.index.template(pattern_id), "occurrence_count": self.index.count(pattern_id),
                "merged_into": None if now == pattern_id else now}

    def get_many(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        return {p: row for p in pattern_ids if (row := self.get(tenant_id, p)) is not None}

    def record_match(self, tenant_id: str, incident_id: str, error_type: str,
                     decision: MatchDecision) -> tuple[str, int, bool]:
        if incident_id not in self.occurrences:  # a repeated incident counts once, and gets the same answer
            pattern_id = self.index.record(tenant_id, decision)
            self.occurrences[incident_id] = pattern_id
            self.rows.setdefault(pattern_id, {
                "id": pattern_id, "tenant_id": tenant_id, "pattern_type": decision.pattern_type,
                "error_type": error_type, "signature": decision.signature, "category": decision.category,
                "candidate_key": decision.candidate_key,
                "first_incident_id": incident_id,
            })
        pattern_id = self.occurrences[incident_id]
        return pattern_id, self.index.count(pattern_id), self.rows[pattern_id]["first_incident_id"] == incident_id


class MemoryRecoveryStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, RecoverySuggestion]] = {}  # by id: (tenant, recovery)
        self.texts: dict[str, str] = {}
        self.decisions: dict[tuple[str, str, str], str] = {}  # (tenant, pattern, action): a person's last

    def insert(self, tenant_id: str, suggestion: RecoverySuggestion, text: str) -> RecoverySuggestion:
        stored = self.for_incident(tenant_id, suggestion.incident_id)
        if stored is not None:
            return stored
        self.rows[suggestion.recovery_id] = (tenant_id, suggestion.model_copy(deep=True))
        self.texts[suggestion.recovery_id] = text
        return suggestion.model_copy(deep=True)

    def for_incident(self, tenant_id: str, incident_id: str) -> RecoverySuggestion | None:
        found = [r for t, r in self.rows.values() if t == tenant_id and r.incident_id == incident_id]
        return found[0].model_copy(deep=True) if found else None

    def for_incidents(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, RecoverySuggestion]:
        return {i: r for i in incident_ids if (r := self.for_incident(tenant_id, i)) is not None}

    def get(self, tenant_id: str, recovery_id: str) -> RecoverySuggestion | None:
        tenant, recovery = self.rows.get(recovery_id, (None, None))
        return recovery.model_copy(deep=True) if recovery is not None and tenant == tenant_id else None

    def save(self, tenant_id: str, suggestion: RecoverySuggestion) -> None:
        if self.rows.get(suggestion.recovery_id, (None,))[0] == tenant_id:
            self.rows[suggestion.recovery_id] = (tenant_id, suggestion.model_copy(deep=True))
            if suggestion.status == "rejected" or suggestion.confirmations_received > 0:
                key = (tenant_id, suggestion.pattern_id, suggestion.action_type)
                self.decisions[key] = "rejected" if suggestion.status == "rejected" else "approved"

    def last_decision(self, tenant_id: str, pattern_id: str, action_type: str) -> str | None:
        return self.decisions.get((tenant_id, pattern_id, action_type))


class MemoryPolicyStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, PolicyRule]] = {}  # by id: (tenant, policy)
        self.conditions: dict[str, dict[str, Any]] = {}
        self.evaluations: dict[tuple[str, str], bool] = {}  # (policy, incident) -> would block
        self.preventions: list[dict[str, Any]] = []
        self.first_activations: dict[str, Any] = {}  # policy id -> its first activated_at (never cleared)

    def _of(self, tenant_id: str) -> list[PolicyRule]:
        return [p for t, p in self.rows.values() if t == tenant_id]

    def insert(self, tenant_id: str, policy: PolicyRule, conditions: dict[str, Any]) -> tuple[PolicyRule, bool]:
        stored = self.for_pattern(tenant_id, policy.source_pattern_id)
        if stored is not None:
            return stored, False
        self.rows[policy.policy_id] = (tenant_id, policy.model_copy(deep=True))
        self.conditions[policy.policy_id] = {**conditions, "expression": policy.condition}
        return policy.model_copy(deep=True), True

    def for_pattern(self, tenant_id: str, pattern_id: str) -> PolicyRule | None:
        found = [p for p in self._of(tenant_id) if p.source_pattern_id == pattern_id]
        return found[0].model_copy(deep=True) if found else None

    def for_patterns(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, PolicyRule]:
        return {p: policy for p in pattern_ids if (policy := self.for_pattern(tenant_id, p)) is not None}

    def get(self, tenant_id: str, policy_id: str) -> PolicyRule | None:
        tenant, policy = self.rows.get(policy_id, (None, None))
        return policy.model_copy(deep=True) if policy is not None and tenant == tenant_id else None

    def get_many(self, tenant_id: str, policy_ids: Collection[str]) -> dict[str, PolicyRule]:
        return {p: policy for p in policy_ids if (policy := self.get(tenant_id, p)) is not None}

    def of_tenant(self, tenant_id: str, mode: PolicyMode | None) -> list[PolicyRule]:
        rows = [p for p in self._of(tenant_id) if mode is None or p.mode == mode]
        return [p.model_copy(deep=True) for p in sorted(rows, key=lambda p: (p.created_at, p.policy_id))]

    def save(self, tenant_id: str, policy: PolicyRule) -> None:
        if self.rows.get(policy.policy_id, (None,))[0] == tenant_id:
            self.rows[policy.policy_id] = (tenant_id, policy.model_copy(deep=True))
            if policy.activated_at is not None:
                self.first_activations.setdefault(policy.policy_id, policy.activated_at)

    def record_evaluation(self, policy: PolicyRule, incident_id: str, would_block: bool) -> bool:
        if (policy.policy_id, incident_id) in self.evaluations:
            return False
        self.evaluations[(policy.policy_id, incident_id)] = would_block
        return True

    def record_shadow(self, tenant_id: str, policy: PolicyRule, incident_id: str, would_block: bool) -> None:
        stored = self.get(tenant_id, policy.policy_id)
        if stored is not None and self.record_evaluation(policy, incident_id, would_block):
            stored.record_shadow_evaluation(would_block)
            self.save(tenant_id, stored)

    def insert_prevention(self, *, prevention_id: str, tenant_id: str, policy: PolicyRule,
                          original_incident_id: str, blocked_incident_id: str, signature_hash: str) -> str:
        for row in self.preventions:
            if row["blocked_incident_id"] == blocked_incident_id:
                return str(row["id"])
        self.preventions.append({
            "id": prevention_id, "tenant_id": tenant_id, "policy_id": policy.policy_id,
            "pattern_id": policy.source_pattern_id, "original_incident_id": original_incident_id,
            "blocked_incident_id": blocked_incident_id, "signature_hash": signature_hash,
        })
        return prevention_id

    def first_activated(self, tenant_id: str) -> dict[str, Any] | None:
        ever = sorted((self.first_activations[p.policy_id], p.policy_id) for p in self._of(tenant_id)
                      if p.policy_id in self.first_activations)
        return {"id": ever[0][1]} if ever else None

    def first_prevention(self, tenant_id: str) -> dict[str, Any] | None:
        mine = [r for r in self.preventions if r["tenant_id"] == tenant_id]
        return {k: mine[0][k] for k in ("id", "blocked_incident_id", "policy_id")} if mine else None


class MemoryRoutingStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, RoutingAdjustment]] = {}  # by id: (tenant, incident, adjustment)
        self.kpis: list[tuple[str, str, float]] = []  # (tenant, agent, kpi), oldest first

    def insert(self, tenant_id: str, incident_id: str,
               adjustment: RoutingAdjustment) -> tuple[RoutingAdjustment, bool]:
        for key, (tenant, _, stored) in self.rows.items():
            if (stored.source_policy_id, stored.agent_id) == (adjustment.source_policy_id, adjustment.agent_id):
                decayed = (tenant == tenant_id and not stored.was_rolled_back and stored.expires_at is not None
                           and stored.expires_at <= adjustment.created_at)
                if not decayed:
                    return stored.model_copy(deep=True), False
                renewed = adjustment.model_copy(update={"adjustment_id": stored.adjustment_id}, deep=True)
                self.rows[key] = (tenant_id, incident_id, renewed)  # as PostgreSQL renews it (stores/routing.py)
                return renewed.model_copy(deep=True), True
        self.rows[adjustment.adjustment_id] = (tenant_id, incident_id, adjustment.model_copy(deep=True))
        return adjustment.model_copy(deep=True), True

    def for_agent(self, tenant_id: str, agent_id: str, *, lock: bool = False) -> list[RoutingAdjustment]:
        rows = [a for t, _, a in self.rows.values() if t == tenant_id and a.agent_id == agent_id]
        ordered = sorted(rows, key=lambda a: a.adjustment_id)
        ordered.sort(key=lambda a: a.created_at, reverse=True)  # newest first, then by id
        return [a.model_copy(deep=True) for a in ordered]

    def save(self, tenant_id: str, adjustment: RoutingAdjustment) -> None:
        stored = self.rows.get(adjustment.adjustment_id)
        if stored is not None and stored[0] == tenant_id:
            self.rows[adjustment.adjustment_id] = (tenant_id, stored[1], adjustment.model_copy(deep=True))

    def record_kpi(self, tenant_id: str, agent_id: str, kpi: float) -> None:
        self.kpis.append((tenant_id, agent_id, kpi))

    def latest_kpi(self, tenant_id: str, agent_id: str) -> float | None:
        mine = [k for t, a, k in self.kpis if (t, a) == (tenant_id, agent_id)]
        return mine[-1] if mine else None

    def latest_kpis(self, tenant_id: str, agent_ids: Collection[str]) -> dict[str, float]:
        return {a: kpi for a in agent_ids if (kpi := self.latest_kpi(tenant_id, a)) is not None}
