"""A set-based consumer (LoggingBatchProcessor's batch_handler): the whole batch at once, and still one
answer per record: a poison record fails at parsing, a record the batch failed goes back alone. No network."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType

from incident_loop.batch import LoggingBatchProcessor, NotAttempted, record_reserve_ms
from incident_loop.schemas.failures import FailureInRecord


class Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _record(body: str) -> dict[str, Any]:
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "h", "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "s",
                           "ApproximateFirstReceiveTimestamp": "0"},
            "messageAttributes": {}, "md5OfBody": "m", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}


def _failure(run: str) -> str:
    return json.dumps({"run_id": run, "tenant_id": "t", "error_code": "E"})


def test_the_batch_handler_gets_every_parsed_record_at_once_and_each_answer_settles_its_record() -> None:
    seen: list[list[str]] = []

    def batch(records: list[Any]) -> list[Any]:
        seen.append([r.body.run_id for r in records])
        return [ValueError("bad run") if r.body.run_id == "r2" else {"ok": r.body.run_id} for r in records]

    records = [_record(_failure("r1")), _record("not json"), _record(_failure("r2")), _record(_failure("r3"))]
    processor = LoggingBatchProcessor(event_type=EventType.SQS, model=FailureInRecord, batch_handler=batch)
    response = processor.handler({"Records": records}, Context())

    assert seen == [["r1", "r2", "r3"]]  # one call, the poison record never reaches it
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        [records[1]["messageId"], records[2]["messageId"]])


def test_no_batch_starts_when_the_invocation_has_too_little_time_left() -> None:
    called: list[int] = []

    def batch(records: list[Any]) -> list[Any]:
        called.append(len(records))
        return [None] * len(records)

    processor = LoggingBatchProcessor(event_type=EventType.SQS, model=FailureInRecord, batch_handler=batch,
                                      raise_on_entire_batch_failure=False)
    records = [_record(_failure("r1")), _record(_failure("r2"))]
    response = processor.handler({"Records": records}, Context(record_reserve_ms() - 1))

    assert called == [] and len(response["batchItemFailures"]) == 2
    assert processor.exceptions and all(e[0] is NotAttempted for e in processor.exceptions)
