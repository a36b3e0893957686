"""CostSim as the functions use it: the canary now; simulate, status and the V2 breaker once wired."""

from __future__ import annotations

from typing import Any

from incident_loop.alerts import Alert, enqueue
from incident_loop.costsim.canary import canary_reports, run_canary
from incident_loop.db import transaction


def canary() -> dict[str, Any]:
    """Run the canary; a failed run raises the seed's CostSimV2CanaryFailure alert."""
    with transaction() as conn:
        report = run_canary(conn)
    if not report["passed"]:
        enqueue(Alert.firing(
            "CostSimV2CanaryFailure", "P2",
            f"canary drift p95 {report['drift_p95']:.3f} > {report['threshold']} ({report['v2_version']})",
            report_id=report["id"]))
    return report


def reports(limit: int = 20) -> list[dict[str, Any]]:
    with transaction() as conn:
        return canary_reports(conn, limit)
