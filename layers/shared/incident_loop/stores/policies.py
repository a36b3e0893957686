"""policy_rules, their evaluations, and the prevention records an active policy writes."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import PolicyMode
from incident_loop.schemas.loop.policy import PolicyRule


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
    created = conn.execute(
        "INSERT INTO policy_rules (id, tenant_id, name, description, rule_type, conditions, actions,"
        " source_type, source_pattern_id, source_recovery_id, generation_confidence, mode, is_active,"
        " scope_type, scope_id, confirmations_required, created_at)"
        " VALUES (%(id)s, %(tenant)s, %(name)s, %(description)s, %(rule_type)s, %(conditions)s,"
        " %(actions)s, 'recovery', %(pattern)s, %(recovery)s, %(confidence)s, %(mode)s, FALSE,"
        " %(scope_type)s, %(scope_id)s, %(required)s, %(created_at)s)"
        " ON CONFLICT (tenant_id, source_pattern_id) DO NOTHING RETURNING id",
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
    stored = policy_for_pattern(conn, tenant_id, policy.source_pattern_id)
    assert stored is not None
    return stored, created is not None


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
        " activated_at = %(activated_at)s, updated_at = now() WHERE tenant_id = %(tenant)s AND id = %(id)s",
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
    conn.execute(
        "INSERT INTO prevention_records (id, tenant_id, policy_id, pattern_id, original_incident_id,"
        " blocked_incident_id, signature_hash) VALUES (%(id)s, %(tenant)s, %(policy)s, %(pattern)s,"
        " %(original)s, %(blocked)s, %(signature)s) ON CONFLICT (blocked_incident_id) DO NOTHING",
        {
            "id": prevention_id,
            "tenant": tenant_id,
            "policy": policy.policy_id,
            "pattern": policy.source_pattern_id,
            "original": original_incident_id,
            "blocked": blocked_incident_id,
            "signature": signature_hash,
        },
    )
    row = conn.execute(
        "SELECT id FROM prevention_records WHERE tenant_id = %(tenant)s AND blocked_incident_id = %(id)s",
        {"tenant": tenant_id, "id": blocked_incident_id},
    ).fetchone()
    assert row is not None
    return str(row["id"])


def first_activated(conn: Connection[Any], tenant_id: str) -> dict[str, Any] | None:
    """The tenant's first policy to be activated (id), or None."""
    return conn.execute(
        "SELECT id FROM policy_rules WHERE tenant_id = %(t)s AND activated_at IS NOT NULL"
        " ORDER BY activated_at LIMIT 1",
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
    """PolicyStore on the unit of work's connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def insert(self, tenant_id: str, policy: PolicyRule, conditions: dict[str, Any]) -> tuple[PolicyRule, bool]:
        return insert_policy(self._conn, tenant_id, policy, conditions)

    def for_pattern(self, tenant_id: str, pattern_id: str) -> PolicyRule | None:
        return policy_for_pattern(self._conn, tenant_id, pattern_id)

    def get(self, tenant_id: str, policy_id: str) -> PolicyRule | None:
        return get_policy(self._conn, tenant_id, policy_id)

    def of_tenant(self, tenant_id: str, mode: PolicyMode | None) -> list[PolicyRule]:
        return list_policies(self._conn, tenant_id, mode)

    def save(self, tenant_id: str, policy: PolicyRule) -> None:
        save_policy(self._conn, tenant_id, policy)

    def record_evaluation(self, policy: PolicyRule, incident_id: str, would_block: bool) -> bool:
        return record_evaluation(self._conn, policy, incident_id, would_block)

    def insert_prevention(self, *, prevention_id: str, tenant_id: str, policy: PolicyRule,
                          original_incident_id: str, blocked_incident_id: str, signature_hash: str) -> str:
        return insert_prevention(self._conn, prevention_id=prevention_id, tenant_id=tenant_id, policy=policy,
                                 original_incident_id=original_incident_id,
                                 blocked_incident_id=blocked_incident_id, signature_hash=signature_hash)

    def first_activated(self, tenant_id: str) -> dict[str, Any] | None:
        return first_activated(self._conn, tenant_id)

    def first_prevention(self, tenant_id: str) -> dict[str, Any] | None:
        return first_prevention(self._conn, tenant_id)
