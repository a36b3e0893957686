"""Bridge 2 (Pattern -> Recovery): SQS consumer of the recovery queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.loop.stage import idempotency_config, run_idempotent_stage, sqs_processor
from incident_loop.loop.suggest_recovery import STAGE, suggest_recovery
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.envelope import EnvelopeRecord

processor = sqs_processor()


def record_handler(record: EnvelopeRecord) -> dict[str, Any]:
    return run_idempotent_stage(record.body, suggest_recovery, STAGE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
