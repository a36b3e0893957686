"""A workflow record whose skill asked to be called later comes back then, not after the visibility timeout."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from incident_loop.settings import get_settings
from incident_loop.skills.errors import CircuitOpen, ExternalError, SkillInputError
from incident_loop.workflows import consumer


class FakeSqs:
    def __init__(self) -> None:
        self.visibility: list[dict[str, Any]] = []

    def change_message_visibility(self, **kwargs: Any) -> None:
        self.visibility.append(kwargs)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> FakeSqs:
    fake = FakeSqs()
    monkeypatch.setenv("WORKFLOW_QUEUE_URL", "https://sqs.local/123/workflows")
    get_settings.cache_clear()
    monkeypatch.setattr(consumer.aws, "sqs", lambda: fake)
    yield fake
    get_settings.cache_clear()


def record(receipt: str = "rh-1", receives: int = 1) -> dict[str, Any]:
    body = {"workflow_run_id": "wf_1", "tenant_id": "tenant-a", "correlation_id": "wf_1"}
    return {"messageId": "m-1", "receiptHandle": receipt, "body": json.dumps(body), "attributes": {
        "ApproximateReceiveCount": str(receives), "SentTimestamp": "0", "SenderId": "x",
        "ApproximateFirstReceiveTimestamp": "0"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:workflows", "awsRegion": "us-east-1"}


def handle(monkeypatch: pytest.MonkeyPatch, error: Exception, lambda_context: Any, receives: int = 1) -> None:
    """One record whose run raises `error`: the batch fails whole (Powertools raises when every record failed)."""
    def failing(message: Any, clock: Any = None) -> Any:
        raise error

    monkeypatch.setattr(consumer, "run_idempotent", failing)
    with pytest.raises(BatchProcessingError):
        consumer.workflow_handler()({"Records": [record(receives=receives)]}, lambda_context)


@pytest.mark.parametrize(("retry_after", "visibility"), [(300.0, 300), (4.2, 5), (90_000.0, 43_200 - 900)])
def test_a_retryable_error_with_a_retry_after_sets_when_the_record_comes_back(
    sqs: FakeSqs, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, retry_after: float, visibility: int
) -> None:
    error = ExternalError("503 from the receiver", code="http_503", retryable=True, retry_after_s=retry_after)
    handle(monkeypatch, error, lambda_context)
    assert sqs.visibility == [{"QueueUrl": "https://sqs.local/123/workflows", "ReceiptHandle": "rh-1",
                               "VisibilityTimeout": visibility}]


def test_an_error_without_a_time_leaves_the_visibility_timeout_alone(
    sqs: FakeSqs, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    handle(monkeypatch, ExternalError("timeout", code="timeout", retryable=True), lambda_context)
    handle(monkeypatch, SkillInputError("bad args"), lambda_context)
    assert sqs.visibility == []


def test_a_record_an_open_breaker_refused_waits_longer_on_each_receive(
    sqs: FakeSqs, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    """The breaker's 60 s cooldown alone spent the queue's 10 receives in 10 minutes of a target's outage and
    dead-lettered the run; doubled per receive (from the cooldown), the 10 receives span about 17 hours."""
    for receives in range(1, 11):
        handle(monkeypatch, CircuitOpen("the breaker of voyage is open", target="voyage", retry_after_s=42.0),
               lambda_context, receives=receives)
    waits = [v["VisibilityTimeout"] for v in sqs.visibility]
    assert waits[:3] == [60, 120, 240] and waits[-1] == 30_720 and sum(waits) >= 16 * 3600
    handle(monkeypatch, ExternalError("429", code="http_429", retryable=True, retry_after_s=42.0), lambda_context,
           receives=9)
    assert sqs.visibility[-1]["VisibilityTimeout"] == 42  # a target's own Retry-After is kept as it says
    for unknown in (None, 0.0):  # cooldown unknown (the store down) or over (a half-open probe is out): the same
        handle(monkeypatch, CircuitOpen("open", target="voyage", retry_after_s=unknown), lambda_context, receives=6)
        assert sqs.visibility[-1]["VisibilityTimeout"] == 1920


def test_the_invocations_context_is_forgotten_after_it(
    sqs: FakeSqs, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    """Registered for good, a run-down context stood for every later skill call in the process that registers none,
    and its time check refused them all (nothing left of an invocation long over)."""
    from incident_loop.skills.idempotency import invocation_left_s

    seen: list[float | None] = []

    def running(message: Any, clock: Any = None) -> Any:
        seen.append(invocation_left_s())
        return {"status": "completed"}

    monkeypatch.setattr(consumer, "run_idempotent", running)
    consumer.workflow_handler()({"Records": [record()]}, lambda_context)
    assert seen and seen[0] is not None and seen[0] > 0  # during the invocation: its time
    assert invocation_left_s() is None  # after it: none
