"""The workflow runner: SQS consumer of the workflow queue; each record runs (or resumes) one workflow run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.observability import logger, metrics, tracer
from incident_loop.workflows.consumer import workflow_handler

handle = workflow_handler()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
