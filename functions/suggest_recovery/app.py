"""Bridge 2 (Pattern -> Recovery): SQS consumer of the recovery queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.loop.stage import stage_handler
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.loop.enums import LoopStage

handle = stage_handler(LoopStage.RECOVERY_SUGGESTED)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
