"""Delivers queued alerts to Prometheus Alertmanager (API v2); failures stay queued, then dead-letter."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.alerts import deliver
from incident_loop.batch import LoggingBatchProcessor
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.alerts import AlertRecord

processor = LoggingBatchProcessor(event_type=EventType.SQS, model=AlertRecord)


def record_handler(record: AlertRecord) -> None:
    deliver([record.body])


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
