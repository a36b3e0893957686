"""Delivers queued alerts to Prometheus Alertmanager (API v2); failures stay queued, then dead-letter.

Every minute (its schedule) it also reconciles the breakers' alerts with the breakers as they are
(breaker_alerts.reconcile): a firing alert for each breaker not CLOSED, re-sent so Alertmanager keeps it,
and the resolution of each that closed lately. A queued firing breaker alert whose breaker has closed since
it was raised (a redelivery) is dropped, not sent.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.alerts import deliver, delivery_worst_case_s
from incident_loop.aws import DYNAMODB_CONFIG, worst_case_s
from incident_loop.batch import LoggingBatchProcessor
from incident_loop.breaker import BreakerRecord, DynamoBreakerStore, StoreUnavailable
from incident_loop.breaker_alerts import reconcile, stale
from incident_loop.observability import logger, metrics, tracer
from incident_loop.schemas.alerts import AlertRecord


def record_reserve_ms() -> int:
    """One alert's worst case: the breaker's state read, then a delivery to an Alertmanager that never answers.
    No record starts with less time left, so a batch ends before the function's timeout (its metrics flushed,
    its unsent alerts returned to the queue), never killed midway with every record sent again."""
    return int(1000 * (worst_case_s(DYNAMODB_CONFIG) + delivery_worst_case_s()))


processor = LoggingBatchProcessor(event_type=EventType.SQS, model=AlertRecord, reserve_ms=record_reserve_ms)


def record_handler(record: AlertRecord) -> None:
    alert = record.body
    breaker = alert.labels.get("breaker")
    if breaker and alert.ends_at is None and stale(alert, _breaker(breaker), time.time()):
        logger.info("stale breaker alert dropped: the breaker has closed since", alert=alert.name, breaker=breaker)
        return
    deliver([alert])


def _breaker(name: str) -> BreakerRecord | None:
    """The breaker as it is, or None when DynamoDB cannot say: a page never waits on the breakers' table."""
    try:
        return DynamoBreakerStore().get(name)
    except StoreUnavailable as exc:
        logger.warning("breaker state unreadable: the alert is delivered as it is", breaker=name, error=str(exc))
        return None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" not in event:  # the schedule's EventBridge event
        return reconcile()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
