"""Ingest: POST /incidents (API Gateway) and the direct SQS entry for internal producers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.api import assemble
from incident_loop.loop.ingest import incident_handler
from incident_loop.observability import logger, metrics, tracer

app = assemble("ingest")

handle_records = incident_handler()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        return handle_records(event, context)
    return app.resolve(event, context)
