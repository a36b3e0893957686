"""The routing view of an agent, and automatic rollback when its KPI regresses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger
from incident_loop.stores.ports import UnitOfWork


def routing_view(tenant_id: str, agent_id: str, now: datetime | None = None, *,
                 uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Every adjustment of the agent with its decayed effect, and the total effect on its routing."""
    now = now or datetime.now(UTC)
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        adjustments = uow.routing.for_agent(tenant_id, agent_id)
    rows = [{**a.to_dict(), "effective_magnitude": round(a.effective_magnitude(now), 6)} for a in adjustments]
    return {
        "agent_id": agent_id,
        "active_adjustments": sum(1 for a in adjustments if a.is_active and not a.was_rolled_back),
        "total_effective_magnitude": round(sum(r["effective_magnitude"] for r in rows), 6),
        "adjustments": rows,
    }


def report_kpi(tenant_id: str, agent_id: str, kpi: float, *, uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Record the agent's KPI and roll back every active adjustment it shows to have made things worse."""
    rolled_back: list[str] = []
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        uow.routing.record_kpi(tenant_id, agent_id, kpi)
        for adj in uow.routing.for_agent(tenant_id, agent_id, lock=True):
            if not adj.is_active or adj.was_rolled_back:
                continue
            if adj.check_kpi_regression(kpi):
                adj.rollback(
                    f"kpi regressed from {adj.kpi_baseline} to {kpi}, past the"
                    f" {adj.rollback_threshold:.0%} rollback threshold"
                )
                rolled_back.append(adj.adjustment_id)
            uow.routing.save(tenant_id, adj)
    if rolled_back:
        logger.warning("routing adjustments rolled back", agent_id=agent_id, adjustments=rolled_back)
    return {"agent_id": agent_id, "kpi": kpi, "rolled_back": rolled_back}
