"""Scheduled retention of failure_matches (older than FAILURE_RETENTION_DAYS), in small batches."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.failures.retention import purge_failures
from incident_loop.observability import logger, metrics, tracer
from incident_loop.settings import get_settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return purge_failures(get_settings().failure_retention_days, max_seconds=240.0)
