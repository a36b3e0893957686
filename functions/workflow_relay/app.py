"""The workflow relay, every few minutes: queued runs whose message never reached the runner get it again."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.observability import logger, metrics, tracer
from incident_loop.workflows.relay import relay_stale_runs


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return relay_stale_runs(time_left_ms=context.get_remaining_time_in_millis)
