"""A consumer fails its batch within a bound: the rest of a batch is not tried once the database is
unavailable, and no record starts when the invocation has too little time left. No network."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response

from incident_loop.batch import LoggingBatchProcessor, record_reserve_ms
from incident_loop.db import DatabaseTimeout
from incident_loop.schemas.failures import FailureIn, FailureInRecord


class Context:
    """A Lambda context with `remaining_ms` left."""

    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _event(n: int) -> dict[str, Any]:
    body = json.dumps({"run_id": "r", "tenant_id": "t", "error_code": "E"})
    return {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": "h", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "s",
                                        "ApproximateFirstReceiveTimestamp": "0"},
                         "messageAttributes": {}, "md5OfBody": "m", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
                        for _ in range(n)]}


def _run(event: dict[str, Any], handler: Any, context: Context,
         processor: LoggingBatchProcessor | None = None) -> dict[str, Any]:
    processor = processor or LoggingBatchProcessor(event_type=EventType.SQS, model=FailureInRecord,
                                                   raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=handler, processor=processor,
                                    context=context)  # type: ignore[arg-type]


def test_once_the_database_is_unavailable_the_rest_of_the_batch_is_not_tried() -> None:
    tried: list[FailureIn] = []

    def handler(record: Any) -> None:
        tried.append(record.body)
        if len(tried) == 2:
            raise DatabaseTimeout("canceling statement due to lock timeout")

    event = _event(5)
    response = _run(event, handler, Context(30_000))
    assert len(tried) == 2
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == [r["messageId"] for r in event["Records"][1:]]


def test_the_next_batch_of_a_warm_container_is_tried_again() -> None:
    processor = LoggingBatchProcessor(event_type=EventType.SQS, model=FailureInRecord,
                                      raise_on_entire_batch_failure=False)

    def failing(record: Any) -> None:
        raise DatabaseTimeout("stalled")

    assert len(_run(_event(2), failing, Context(30_000), processor)["batchItemFailures"]) == 2
    calls: list[int] = []
    response = _run(_event(3), lambda record: calls.append(1), Context(30_000), processor)
    assert response["batchItemFailures"] == [] and len(calls) == 3


def test_no_record_starts_with_less_than_one_records_worst_case_left() -> None:
    calls: list[int] = []
    response = _run(_event(3), lambda record: calls.append(1), Context(record_reserve_ms() - 1))
    assert calls == [] and len(response["batchItemFailures"]) == 3
