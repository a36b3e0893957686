"""The workflow runner's come_back_after() against SQS's ChangeMessageVisibility rule (moto does not enforce it).

SQS caps a message's visibility at 12 hours in all from its receive: a ChangeMessageVisibility asking for more than
is left is refused (InvalidParameterValue), never trimmed. Clamped to 43 200 s, every Retry-After or breaker
cooldown of about 12 h or more was refused once the record had been in flight at all: the queue's 1800 s
visibility applied, and the run came back every 30 minutes, spending its 10 receives (about 5 h) and landing in the
DLQ long before the service asked to be called again.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from incident_loop import aws, settings
from incident_loop.skills.retrying import MAX_RETRY_AFTER_S
from incident_loop.workflows import consumer

TWELVE_HOURS_S = 43_200


class _SqsWithTheVisibilityCap:
    """ChangeMessageVisibility as SQS answers it: received `in_flight_s` ago, at most 12 h in total."""

    def __init__(self, in_flight_s: float) -> None:
        self.received_at = time.time() - in_flight_s
        self.accepted: list[int] = []

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> dict:
        left = TWELVE_HOURS_S - (time.time() - self.received_at)
        if VisibilityTimeout > left:
            raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": (
                f"Value {VisibilityTimeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                f"VisibilityTimeout for the message is beyond the limit [43200 seconds]")}},
                "ChangeMessageVisibility")
        self.accepted.append(VisibilityTimeout)
        return {}


@pytest.mark.parametrize("retry_after_s", [TWELVE_HOURS_S, MAX_RETRY_AFTER_S])
def test_a_long_retry_after_still_delays_the_redelivery(monkeypatch: pytest.MonkeyPatch,
                                                        retry_after_s: float) -> None:
    sqs = _SqsWithTheVisibilityCap(in_flight_s=300)  # the record ran its 300 s before its skill said "come back"
    monkeypatch.setenv("WORKFLOW_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/WorkflowQueue")
    settings.get_settings.cache_clear()
    monkeypatch.setattr(aws, "sqs", lambda: sqs)
    try:
        consumer.come_back_after("receipt-handle", retry_after_s)
    finally:
        settings.get_settings.cache_clear()
    assert sqs.accepted, (f"SQS rejected the ChangeMessageVisibility for a Retry-After of {retry_after_s:.0f} s "
                          f"(asked {consumer.MAX_VISIBILITY_S} s with 300 s already in flight): the 1800 s queue "
                          f"visibility applies instead")
    assert sqs.accepted[0] >= TWELVE_HOURS_S - 900  # about as long as SQS allows, not the queue's 1800 s
