"""The workflow runner's SQS handler: partial batch failures, Powertools idempotency, the invocation's clock.

Two layers keep a redelivered message from doing anything twice: Powertools idempotency on DynamoDB, keyed
on (tenant, run, segment), answers a repeat with the stored outcome; under it, the audit's unique
(run, op_index) and each op's idempotency key hold even after that record expires.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from incident_loop import aws
from incident_loop.batch import LoggingBatchProcessor
from incident_loop.observability import logger
from incident_loop.schemas.workflows import WorkflowMessage, WorkflowRecord
from incident_loop.settings import get_settings
from incident_loop.skills.errors import CircuitOpen, SkillError
from incident_loop.skills.idempotency import lambda_context_of
from incident_loop.workflows.runner import run_workflow

# SQS allows a message 12 hours of visibility in all, counted from its receive, and refuses (never trims) a
# ChangeMessageVisibility past what is left: less the longest any invocation can have held the record (15 min).
MAX_VISIBILITY_S = 43_200 - 900


@cache
def idempotency_config() -> IdempotencyConfig:
    """One run segment once per expiry window, per tenant (another tenant's message never replays a result),
    per delivery of the relay (a message it sent again is judged afresh)."""
    return IdempotencyConfig(
        event_key_jmespath="[tenant_id, workflow_run_id, segment, relayed_at]",
        expires_after_seconds=get_settings().idempotency_expiry_s,
        raise_on_no_idempotency_key=True,
    )


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table)


def run_idempotent(message: WorkflowMessage, time_left_ms: Callable[[], int] | None = None) -> dict[str, Any]:
    """run_workflow behind Powertools idempotency (DynamoDB), keyed on tenant, run and segment."""

    @idempotent_function(data_keyword_argument="message", persistence_store=_persistence(),
                         config=idempotency_config())
    def workflow_segment(message: WorkflowMessage) -> dict[str, Any]:
        return run_workflow(message, time_left_ms=time_left_ms)

    return workflow_segment(message=message)


# A record whose call a breaker refused comes back after the breaker's cooldown (60 s), or after this base doubled
# for each receive before, whichever is longer: the cooldown alone spent the queue's 10 receives in 10 minutes of a
# target's outage (a shared target is kept open by every run's failures), and dead-lettered the run. Doubled, the
# 10 receives span about 17 hours.
BREAKER_BACKOFF_BASE_S = 60.0


def breaker_backoff_s(receives: int) -> float:
    """How long a record refused by an open breaker waits before its next receive, after `receives` receives."""
    return min(BREAKER_BACKOFF_BASE_S * 2 ** max(receives - 1, 0), float(MAX_VISIBILITY_S))


def come_back_after(receipt_handle: str, seconds: float) -> None:
    """Redeliver the record when its skill asked to be called again (Retry-After, the webhook schedule, a
    breaker's cooldown) rather than after the queue's visibility timeout. Best effort: if SQS refuses, the
    visibility timeout brings it back anyway."""
    url = get_settings().workflow_queue_url
    if not url:
        return
    try:
        aws.sqs().change_message_visibility(QueueUrl=url, ReceiptHandle=receipt_handle,
                                            VisibilityTimeout=max(1, min(int(seconds + 0.999), MAX_VISIBILITY_S)))
    except (BotoCoreError, ClientError):
        logger.warning("redelivery time not set; the visibility timeout applies", retry_after_s=seconds)


def workflow_handler() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The runner function's handler: the workflow queue's batches, each record one run segment."""
    processor = LoggingBatchProcessor(event_type=EventType.SQS, model=WorkflowRecord)

    def record_handler(record: WorkflowRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
        clock = lambda_context.get_remaining_time_in_millis if lambda_context is not None else None
        try:
            return run_idempotent(record.body, clock)
        except SkillError as exc:
            if isinstance(exc, CircuitOpen):  # its cooldown may be unknown (None) or over (0: a probe is out)
                come_back_after(record.receiptHandle, max(exc.retry_after_s or 0.0,
                                                          breaker_backoff_s(int(record.attributes.ApproximateReceiveCount))))
            elif exc.retryable and getattr(exc, "retry_after_s", None):
                come_back_after(record.receiptHandle, float(exc.retry_after_s))  # type: ignore[attr-defined]
            raise

    def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        idempotency_config().register_lambda_context(context)
        with lambda_context_of(context):  # the skills' in-progress records and requests end with this invocation
            return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                            context=context)

    return handle
