"""Scheduled CostSim canary: the fixed corpus through V1 and V2, a stored report, an alert when it fails; then the
CostSim incidents set right with the breaker (breaker_alerts.reconcile_costsim_incidents)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.costsim.service import canary, reconcile_incidents
from incident_loop.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        report = canary()
    finally:  # a trip whose incident PostgreSQL could not take then, or a recovery that could not resolve it, set right
        incidents = reconcile_incidents()
    return {**{key: report[key] for key in ("id", "passed", "drift_p95", "threshold")}, "incidents": incidents}
