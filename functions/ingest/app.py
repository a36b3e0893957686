"""Ingest: POST /incidents (API Gateway) and the direct SQS entry for internal producers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.api import app
from incident_loop.batch import LoggingBatchProcessor
from incident_loop.loop.ingest import ingest_incident
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.incident import IncidentRecord

processor = LoggingBatchProcessor(event_type=EventType.SQS, model=IncidentRecord)


def record_handler(record: IncidentRecord) -> dict[str, Any]:
    message = record.body
    accepted = ingest_incident(message, message.tenant_id)
    return accepted.model_dump()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    return app.resolve(event, context)
