"""routing_adjustments and the agent KPIs they are judged by."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from psycopg import Connection

from incident_loop.schemas.loop.policy import RoutingAdjustment
from incident_loop.stores.read_ahead import MISSING, ReadAhead

_COLUMNS = (
    "id AS adjustment_id, agent_id, capability, adjustment_type, magnitude, reason, source_policy_id,"
    " max_delta, decay_days, rollback_threshold, created_at, expires_at, is_active, was_rolled_back,"
    " rollback_reason, kpi_baseline, kpi_current"
)


def insert_adjustment(
    conn: Connection[Any], tenant_id: str, incident_id: str, adj: RoutingAdjustment
) -> tuple[RoutingAdjustment, bool]:
    """One adjustment per (policy, agent): a recurring failure never stacks past max_delta. One that has decayed
    to nothing (past its expires_at, not rolled back) is renewed: the failure recurring after it penalises the
    agent again, from now, by the new magnitude (a rolled-back one stays rolled back).

    One statement returns the stored adjustment and whether this call created or renewed it (a second only when
    another transaction stored it after the first one's snapshot was taken).
    """
    stored = conn.execute(
        "WITH ins AS (INSERT INTO routing_adjustments (id, tenant_id, agent_id, capability, adjustment_type, magnitude,"
        " reason, source_policy_id, source_incident_id, max_delta, decay_days, rollback_threshold,"
        " created_at, expires_at, kpi_baseline)"
        " VALUES (%(id)s, %(tenant)s, %(agent)s, %(capability)s, %(type)s, %(magnitude)s, %(reason)s,"
        " %(policy)s, %(incident)s, %(max_delta)s, %(decay)s, %(threshold)s, %(created)s, %(expires)s,"
        " %(baseline)s) ON CONFLICT (source_policy_id, agent_id) DO UPDATE SET capability = EXCLUDED.capability,"
        " adjustment_type = EXCLUDED.adjustment_type, magnitude = EXCLUDED.magnitude, reason = EXCLUDED.reason,"
        " source_incident_id = EXCLUDED.source_incident_id, max_delta = EXCLUDED.max_delta,"
        " decay_days = EXCLUDED.decay_days, rollback_threshold = EXCLUDED.rollback_threshold,"
        " created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, kpi_baseline = EXCLUDED.kpi_baseline,"
        " kpi_current = NULL, is_active = TRUE"
        " WHERE routing_adjustments.tenant_id = EXCLUDED.tenant_id AND NOT routing_adjustments.was_rolled_back"
        " AND routing_adjustments.expires_at <= EXCLUDED.created_at"
        f" RETURNING {_COLUMNS})"
        " SELECT *, TRUE AS created FROM ins UNION ALL"
        f" SELECT {_COLUMNS}, FALSE FROM routing_adjustments WHERE tenant_id = %(tenant)s"
        " AND source_policy_id = %(policy)s AND agent_id = %(agent)s AND NOT EXISTS (SELECT 1 FROM ins)",
        {
            "id": adj.adjustment_id,
            "tenant": tenant_id,
            "agent": adj.agent_id,
            "capability": adj.capability,
            "type": adj.adjustment_type,
            "magnitude": adj.magnitude,
            "reason": adj.reason,
            "policy": adj.source_policy_id,
            "incident": incident_id,
            "max_delta": adj.max_delta,
            "decay": adj.decay_days,
            "threshold": adj.rollback_threshold,
            "created": adj.created_at,
            "expires": adj.expires_at,
            "baseline": adj.kpi_baseline,
        },
    ).fetchone() or conn.execute(
        f"SELECT {_COLUMNS}, FALSE AS created FROM routing_adjustments"
        " WHERE tenant_id = %(tenant)s AND source_policy_id = %(policy)s AND agent_id = %(agent)s",
        {"tenant": tenant_id, "policy": adj.source_policy_id, "agent": adj.agent_id},
    ).fetchone()
    assert stored is not None
    created = bool(stored.pop("created"))
    return RoutingAdjustment.model_validate(stored), created


def adjustments_for_agent(
    conn: Connection[Any], tenant_id: str, agent_id: str, *, lock: bool = False
) -> list[RoutingAdjustment]:
    """Every adjustment of an agent, newest first (active and rolled back)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM routing_adjustments WHERE tenant_id = %(tenant)s AND agent_id = %(agent)s"
        " ORDER BY created_at DESC, id" + (" FOR UPDATE" if lock else ""),
        {"tenant": tenant_id, "agent": agent_id},
    ).fetchall()
    return [RoutingAdjustment.model_validate(r) for r in rows]


def save_adjustment(conn: Connection[Any], tenant_id: str, adj: RoutingAdjustment) -> None:
    conn.execute(
        "UPDATE routing_adjustments SET is_active = %(active)s, was_rolled_back = %(rolled)s,"
        " rollback_reason = %(reason)s, kpi_current = %(kpi)s, kpi_baseline = %(baseline)s"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {"active": adj.is_active, "rolled": adj.was_rolled_back, "reason": adj.rollback_reason,
         "kpi": adj.kpi_current, "baseline": adj.kpi_baseline, "tenant": tenant_id, "id": adj.adjustment_id},
    )


def record_kpi(conn: Connection[Any], tenant_id: str, agent_id: str, kpi: float) -> None:
    conn.execute(
        "INSERT INTO agent_kpis (tenant_id, agent_id, kpi) VALUES (%(tenant)s, %(agent)s, %(kpi)s)",
        {"tenant": tenant_id, "agent": agent_id, "kpi": kpi},
    )


def latest_kpi(conn: Connection[Any], tenant_id: str, agent_id: str) -> float | None:
    row = conn.execute(
        "SELECT kpi FROM agent_kpis WHERE tenant_id = %(tenant)s AND agent_id = %(agent)s"
        " ORDER BY reported_at DESC, id DESC LIMIT 1",
        {"tenant": tenant_id, "agent": agent_id},
    ).fetchone()
    return None if row is None else float(row["kpi"])


def latest_kpis(conn: Connection[Any], tenant_id: str, agent_ids: Collection[str]) -> dict[str, float]:
    """latest_kpi() of each agent that reported one, in one statement."""
    rows = conn.execute(
        "SELECT DISTINCT ON (agent_id) agent_id, kpi FROM agent_kpis WHERE tenant_id = %(tenant)s"
        " AND agent_id = ANY(%(agents)s) ORDER BY agent_id, reported_at DESC, id DESC",
        {"tenant": tenant_id, "agents": list(agent_ids)},
    ).fetchall()
    return {r["agent_id"]: float(r["kpi"]) for r in rows}


class PostgresRoutingStore:
    """RoutingStore on the unit of work's connection; latest_kpi() answers from latest_kpis()."""

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None) -> None:
        self._conn = conn
        self._ahead = read_ahead or ReadAhead()

    def insert(self, tenant_id: str, incident_id: str,
               adjustment: RoutingAdjustment) -> tuple[RoutingAdjustment, bool]:
        return insert_adjustment(self._conn, tenant_id, incident_id, adjustment)

    def for_agent(self, tenant_id: str, agent_id: str, *, lock: bool = False) -> list[RoutingAdjustment]:
        return adjustments_for_agent(self._conn, tenant_id, agent_id, lock=lock)

    def save(self, tenant_id: str, adjustment: RoutingAdjustment) -> None:
        save_adjustment(self._conn, tenant_id, adjustment)

    def record_kpi(self, tenant_id: str, agent_id: str, kpi: float) -> None:
        record_kpi(self._conn, tenant_id, agent_id, kpi)
        self._ahead.drop("kpi", (tenant_id, agent_id))

    def latest_kpi(self, tenant_id: str, agent_id: str) -> float | None:
        known = self._ahead.get("kpi", (tenant_id, agent_id))
        return latest_kpi(self._conn, tenant_id, agent_id) if known is MISSING else known

    def latest_kpis(self, tenant_id: str, agent_ids: Collection[str]) -> dict[str, float]:
        found = latest_kpis(self._conn, tenant_id, agent_ids)
        self._ahead.put_all("kpi", tenant_id, agent_ids, found)
        return found
