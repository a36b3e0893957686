"""The SQS entry of failure persistence: match each failure against the catalog and store it (or park it)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.batch import LoggingBatchProcessor
from incident_loop.failures.persist import persist
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.failures import FailureInRecord

processor = LoggingBatchProcessor(event_type=EventType.SQS, model=FailureInRecord)


def record_handler(record: FailureInRecord) -> dict[str, Any]:
    return persist(record.body).model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
