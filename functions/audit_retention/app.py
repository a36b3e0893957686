"""Scheduled retention of the skill audit (m11_audit, older than AUDIT_RETENTION_DAYS), in small batches."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.observability import logger, metrics, tracer
from incident_loop.settings import get_settings
from incident_loop.workflows.retention import purge_audit


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return purge_audit(get_settings().audit_retention_days, max_seconds=240.0)
