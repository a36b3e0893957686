"""alert_worker ends its batch before its function's timeout, however slow Alertmanager is.

Against an Alertmanager that accepts connections and never answers, one delivery takes 3 x 5 s plus backoff.
The worker used to keep starting records until 10 s (the database's worst case) were left: a batch of three ran
about 47 s, so Lambda killed it at 30 s, its AlertSendFailures metric was never flushed, and every record came
back, delivered or not.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from incident_loop import settings
from incident_loop.schemas.alerts import Alert
from incident_loop_dev.local.runner import handler_module
from incident_loop_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


class DeadlineContext:
    """A Lambda context whose remaining time runs down from `timeout_s`, as the real one does."""

    function_name = "AlertWorkerFunction"
    memory_limit_in_mb = 512
    aws_request_id = str(uuid.uuid4())
    log_stream_name = "local"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:AlertWorkerFunction"

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _record(alert: Alert) -> dict[str, Any]:
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": alert.model_dump_json(),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "x",
                           "ApproximateFirstReceiveTimestamp": "0"},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AlertQueue", "awsRegion": "us-east-1"}


@pytest.fixture
def silent_alertmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """An Alertmanager that accepts TCP connections (the kernel's backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    monkeypatch.setenv("ALERTMANAGER_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    settings.get_settings.cache_clear()
    yield server
    server.close()
    settings.get_settings.cache_clear()


def _function_timeout_s() -> float:
    template = load_template(ROOT / "template.yaml")
    own = template["Resources"]["AlertWorkerFunction"]["Properties"].get("Timeout")
    return float(own or template["Globals"]["Function"]["Timeout"])


def test_a_batch_against_a_silent_alertmanager_ends_before_the_functions_timeout(
        local_app: Any, silent_alertmanager: socket.socket) -> None:
    worker = handler_module(ROOT / "functions" / "alert_worker", "app.lambda_handler", "alert_worker_bound")
    timeout_s = _function_timeout_s()
    event = {"Records": [_record(Alert.firing("CostSimRapidCBTrips", "P1", f"trip {n}")) for n in range(3)]}

    started = time.monotonic()
    with contextlib.suppress(BatchProcessingError):  # every record failed: all go back to the queue
        worker.lambda_handler(event, DeadlineContext(timeout_s))
    elapsed = time.monotonic() - started

    assert 15 < elapsed < timeout_s, f"the batch ran {elapsed:.1f} s against a {timeout_s} s timeout"

    # With less than one record's worst case left, none is started: the batch answers at once.
    started = time.monotonic()
    with contextlib.suppress(BatchProcessingError):
        worker.lambda_handler(event, DeadlineContext(20.0))
    assert time.monotonic() - started < 2
    assert worker.record_reserve_ms() == 22_600  # the breaker read's 7 s and a delivery's 15.6 s
