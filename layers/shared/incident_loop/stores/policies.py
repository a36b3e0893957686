"""policy_rules, their evaluations, and the prevention records an active policy writes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import PolicyMode
from incident_loop.schemas.loop.policy import PolicyRule
from incident_loop.stores.read_ahead import MISSING, ReadAhead


def to_model(row: dict[str, Any]) -> PolicyRule:
    return PolicyRule(
        policy_id=row["id"],
        name=row["name"],
        description=row["description"],
        category=row["rule_type"],
        condition=row["conditions"]["expression"],
        action=row["actions"]["action"],
        scope_type=row["scope_type"],
        scope_id=row["scope_id"],
        source_pattern_id=row["source_pattern_id"],
        source_recovery_id=row["source_recovery_id"],
        confidence=row["generation_confidence"],
        confidence_band=ConfidenceBand.from_confidence(row["generation_confidence"]),
        mode=PolicyMode(row["mode"]),
        confirmations_required=row["confirmations_required"],
        confirmations_received=row["confirmations_received"],
        regret_count=row["regret_count"],
        shadow_evaluations=row["shadow_evaluations"],
        shadow_would_block=row["shadow_would_block"],
        created_at=row["created_at"],
        activated_at=row["activated_at"],
    )


def insert_policy(
    conn: Connection[Any], tenant_id: str, policy: PolicyRule, conditions: dict[str, Any]
) -> tuple[PolicyRule, bool]:
    """One policy per (tenant, pattern): returns the stored policy and whether this call created it."""
    row = conn.execute(
        "WITH ins AS (INSERT INTO policy_rules (id, tenant_id, name, description, rule_type, conditions, actions,"
        " source_type, source_pattern_id, source_recovery_id, generation_confidence, mode, is_active,"
        " scope_type, scope_id, confirmations_required, created_at)"
        " VALUES (%(id)s, %(tenant)s, %(name)s, %(description)s, %(rule_type)s, %(conditions)s,"
        " %(actions)s, 'recovery', %(pattern)s, %(recovery)s, %(confidence)s, %(mode)s, FALSE,"
        " %(scope_type)s, %(scope_id)s, %(required)s, %(created_at)s)"
        " ON CONFLICT (tenant_id, source_pattern_id) DO NOTHING RETURNING *)"
        " SELECT *, TRUE AS created FROM ins UNION ALL SELECT *, FALSE FROM policy_rules"
        " WHERE tenant_id = %(tenant)s AND source_pattern_id = %(pattern)s AND NOT EXISTS (SELECT 1 FROM ins)",
        {
            "id": policy.policy_id,
            "tenant": tenant_id,
            "name": policy.name,
            "description": policy.description,
            "rule_type": policy.category,
            "conditions": Jsonb({**conditions, "expression": policy.condition}),
            "actions": Jsonb({"action": policy.action}),
            "pattern": policy.source_pattern_id,
            "recovery": policy.source_recovery_id,
            "confidence": policy.confidence,
            "mode": policy.mode.value,
            "scope_type": policy.scope_type,
            "scope_id": policy.scope_id,
            "required": policy.confirmations_required,
            "created_at": policy.created_at,
        },
    ).fetchone()
    if row is not None:
        return to_model(row), bool(row["created"])
    # Another transaction created it after this statement's snapshot: a new statement sees it.
    stored = policy_for_pattern(conn, tenant_id, policy.source_pattern_id)
    assert stored is not None
    return stored, False


def policy_for_pattern(conn: Connection[Any], tenant_id: str, pattern_id: str) -> PolicyRule | None:
    row = conn.execute(
        "SELECT * FROM policy_rules WHERE tenant_id = %(tenant)s AND source_pattern_id = %(pattern)s",
        {"tenant": tenant_id, "pattern": pattern_id},
    ).fetchone()
    return None if row is None else to_model(row)


def get_policy(conn: Connection[Any], tenant_id: str, policy_id: str) -> PolicyRule | None:
    """One policy of the tenant, locked for the transaction (its counters are about to change)."""
    row = conn.execute(
        "SELECT * FROM policy_rules WHERE id = %(id)s AND tenant_id = %(tenant)s FOR UPDATE",
        {"id": policy_id, "tenant": tenant_id},
    ).fetchone()
    return None if row is None else to_model(row)


def list_policies(conn: Connection[Any], tenant_id: str, mode: PolicyMode | None) -> list[PolicyRule]:
    rows = conn.execute(
        "SELECT * FROM policy_rules WHERE tenant_id = %(tenant)s"
        " AND (%(mode)s::text IS NULL OR mode = %(mode)s) ORDER BY created_at, id",
        {"tenant": tenant_id, "mode": mode.value if mode else None},
    ).fetchall()
    return [to_model(r) for r in rows]


def save_policy(conn: Connection[Any], tenant_id: str, policy: PolicyRule) -> None:
    """Persist a policy's lifecycle state (mode, confirmations, regrets, shadow counts)."""
    conn.execute(
        "UPDATE policy_rules SET mode = %(mode)s, is_active = %(active)s,"
        " confirmations_received = %(confirmations)s, regret_count = %(regrets)s,"
        " shadow_evaluations = %(evaluations)s, shadow_would_block = %(would_block)s,"
        " activated_at = %(activated_at)s, first_activated_at = COALESCE(first_activated_at, %(activated_at)s),"
        " updated_at = now() WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {
            "mode": policy.mode.value,
            "active": policy.mode == PolicyMode.ACTIVE,
            "confirmations": policy.confirmations_received,
            "regrets": policy.regret_count,
            "evaluations": policy.shadow_evaluations,
            "would_block": policy.shadow_would_block,
            "activated_at": policy.activated_at,
            "tenant": tenant_id,
            "id": policy.policy_id,
        },
    )


def record_evaluation(
    conn: Connection[Any], policy: PolicyRule, incident_id: str, would_block: bool
) -> bool:
    """Note that the policy was evaluated against an incident; False when it already was."""
    row = conn.execute(
        "INSERT INTO policy_evaluations (policy_id, incident_id, mode, would_block)"
        " VALUES (%(policy)s, %(incident)s, %(mode)s, %(would_block)s)"
        " ON CONFLICT (policy_id, incident_id) DO NOTHING RETURNING policy_id",
        {"policy": policy.policy_id, "incident": incident_id, "mode": policy.mode.value,
         "would_block": would_block},
    ).fetchone()
    return row is not None


def record_shadow(conn: Connection[Any], tenant_id: str, policy: PolicyRule, incident_id: str,
                  would_block: bool) -> None:
    """record_evaluation() and, when it is new, the policy's shadow counters, in one statement that
    increments them where they are stored (no answer to wait for, no count lost to a concurrent writer)."""
    conn.execute(
        "WITH ev AS (INSERT INTO policy_evaluations (policy_id, incident_id, mode, would_block)"
        " VALUES (%(policy)s, %(incident)s, %(mode)s, %(would_block)s)"
        " ON CONFLICT (policy_id, incident_id) DO NOTHING RETURNING policy_id)"
        " UPDATE policy_rules p SET shadow_evaluations = p.shadow_evaluations + 1,"
        " shadow_would_block = p.shadow_would_block + CASE WHEN %(would_block)s THEN 1 ELSE 0 END,"
        " updated_at = now() FROM ev WHERE p.id = ev.policy_id AND p.tenant_id = %(tenant)s",
        {"policy": policy.policy_id, "incident": incident_id, "mode": policy.mode.value,
         "would_block": would_block, "tenant": tenant_id},
    )


def insert_prevention(
    conn: Connection[Any],
    *,
    prevention_id: str,
    tenant_id: str,
    policy: PolicyRule,
    original_incident_id: str,
    blocked_incident_id: str,
    signature_hash: str,
) -> str:
    """Record that an active policy prevented an incident (once per incident); returns the record id."""
    row = conn.execute(
        "WITH ins AS (INSERT INTO prevention_records (id, tenant_id, policy_id, pattern_id, original_incident_id,"
        " blocked_incident_id, signature_hash) VALUES (%(id)s, %(tenant)s, %(policy)s, %(pattern)s,"
        " %(original)s, %(blocked)s, %(signature)s) ON CONFLICT (blocked_incident_id) DO NOTHING RETURNING id)"
        " SELECT id FROM ins UNION ALL SELECT id FROM prevention_records WHERE tenant_id = %(tenant)s"
        " AND blocked_incident_id = %(blocked)s AND NOT EXISTS (SELECT 1 FROM ins)",
        {
            "id": prevention_id,
            "tenant": tenant_id,
            "policy": policy.policy_id,
            "pattern": policy.source_pattern_id,
            "original": original_incident_id,
            "blocked": blocked_incident_id,
            "signature": signature_hash,
        },
    ).fetchone() or conn.execute(  # stored by another transaction after this statement's snapshot
        "SELECT id FROM prevention_records WHERE tenant_id = %(tenant)s AND blocked_incident_id = %(id)s",
        {"tenant": tenant_id, "id": blocked_incident_id},
    ).fetchone()
    assert row is not None
    return str(row["id"])


def first_activated(conn: Connection[Any], tenant_id: str) -> dict[str, Any] | None:
    """The tenant's first policy to be activated (id), or None: ever activated, whether it acts now or not."""
    return conn.execute(
        "SELECT id FROM policy_rules WHERE tenant_id = %(t)s AND first_activated_at IS NOT NULL"
        " ORDER BY first_activated_at LIMIT 1",
        {"t": tenant_id},
    ).fetchone()


def first_prevention(conn: Connection[Any], tenant_id: str) -> dict[str, Any] | None:
    """The tenant's first prevention (id, blocked_incident_id, policy_id), or None."""
    return conn.execute(
        "SELECT id, blocked_incident_id, policy_id FROM prevention_records WHERE tenant_id = %(t)s"
        " ORDER BY created_at LIMIT 1",
        {"t": tenant_id},
    ).fetchone()


class PostgresPolicyStore:
    """PolicyStore on the unit of work's connection.

    for_pattern() answers from for_patterns(), get() from get_many() (which locks as get() does), and
    insert() from for_patterns() when the pattern's policy is known to exist; save() keeps both current.
    """

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None) -> None:
        self._conn = conn
        self._ahead = read_ahead or ReadAhead()

    def insert(self, tenant_id: str, policy: PolicyRule, conditions: dict[str, Any]) -> tuple[PolicyRule, bool]:
        known = self._ahead.get("policy_for_pattern", (tenant_id, policy.source_pattern_id))
        if known not in (MISSING, None):  # one per (tenant, pattern): the insert would find this one
            return known.model_copy(deep=True), False
        stored, created = insert_policy(self._conn, tenant_id, policy, conditions)
        self._remember(tenant_id, stored)
        return stored, created

    def for_pattern(self, tenant_id: str, pattern_id: str) -> PolicyRule | None:
        known = self._ahead.get("policy_for_pattern", (tenant_id, pattern_id))
        if known is MISSING:
            return policy_for_pattern(self._conn, tenant_id, pattern_id)
        return None if known is None else known.model_copy(deep=True)

    def for_patterns(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, PolicyRule]:
        rows = self._conn.execute(
            "SELECT * FROM policy_rules WHERE tenant_id = %(tenant)s AND source_pattern_id = ANY(%(ids)s)",
            {"tenant": tenant_id, "ids": list(pattern_ids)},
        ).fetchall()
        found = {r["source_pattern_id"]: to_model(r) for r in rows}
        self._ahead.put_all("policy_for_pattern", tenant_id, pattern_ids, found)
        return {k: v.model_copy(deep=True) for k, v in found.items()}

    def get(self, tenant_id: str, policy_id: str) -> PolicyRule | None:
        known = self._ahead.get("policy", (tenant_id, policy_id))
        if known is MISSING:
            return get_policy(self._conn, tenant_id, policy_id)
        return None if known is None else known.model_copy(deep=True)

    def get_many(self, tenant_id: str, policy_ids: Collection[str]) -> dict[str, PolicyRule]:
        rows = self._conn.execute(  # locked in id order, as any two batches lock them
            "SELECT * FROM policy_rules WHERE id = ANY(%(ids)s) AND tenant_id = %(tenant)s ORDER BY id FOR UPDATE",
            {"ids": sorted(policy_ids), "tenant": tenant_id},
        ).fetchall()
        found = {r["id"]: to_model(r) for r in rows}
        self._ahead.put_all("policy", tenant_id, policy_ids, found)
        return {k: v.model_copy(deep=True) for k, v in found.items()}

    def _remember(self, tenant_id: str, policy: PolicyRule) -> None:
        """A policy as this transaction has just written it, wherever it was read ahead."""
        self._ahead.put("policy_for_pattern", (tenant_id, policy.source_pattern_id), policy.model_copy(deep=True))
        if self._ahead.get("policy", (tenant_id, policy.policy_id)) is not MISSING:
            self._ahead.put("policy", (tenant_id, policy.policy_id), policy.model_copy(deep=True))

    def of_tenant(self, tenant_id: str, mode: PolicyMode | None) -> list[PolicyRule]:
        return list_policies(self._conn, tenant_id, mode)

    def save(self, tenant_id: str, policy: PolicyRule) -> None:
        save_policy(self._conn, tenant_id, policy)
        self._remember(tenant_id, policy)

    def record_evaluation(self, policy: PolicyRule, incident_id: str, would_block: bool) -> bool:
        return record_evaluation(self._conn, policy, incident_id, would_block)

    def record_shadow(self, tenant_id: str, policy: PolicyRule, incident_id: str, would_block: bool) -> None:
        record_shadow(self._conn, tenant_id, policy, incident_id, would_block)
        # The counters read ahead, counted as the row now counts them: an incident is evaluated once
        # (this transaction's repeats are not counted again; an earlier transaction's evaluation recorded
        # the incident's stage with it, so the stage replays instead of evaluating).
        counted = self._ahead.get("shadow_counted", (policy.policy_id, incident_id))
        known = self._ahead.get("policy_for_pattern", (tenant_id, policy.source_pattern_id))
        if counted is MISSING and known not in (MISSING, None):
            known.record_shadow_evaluation(would_block)
        self._ahead.put("shadow_counted", (policy.policy_id, incident_id), True)

    def insert_prevention(self, *, prevention_id: str, tenant_id: str, policy: PolicyRule,
                          original_incident_id: str, blocked_incident_id: str, signature_hash: str) -> str:
        return insert_prevention(self._conn, prevention_id=prevention_id, tenant_id=tenant_id, policy=policy,
                                 original_incident_id=original_incident_id,
                                 blocked_incident_id=blocked_incident_id, signature_hash=signature_hash)

    def first_activated(self, tenant_id: str) -> dict[str, Any] | None:
        return first_activated(self._conn, tenant_id)

    def first_prevention(self, tenant_id: str) -> dict[str, Any] | None:
        return first_prevention(self._conn, tenant_id)
