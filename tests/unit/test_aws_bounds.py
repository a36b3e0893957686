"""The AWS clients' bounds are what the code and its docs count on: DynamoDB 2 attempts, SQS 3, each bounded.

botocore's `max_attempts` counts retries after the first attempt: configured as 2 and 3, DynamoDB made 3 attempts
and SQS 4, so a hung SQS send could take about 35 s, past API Gateway's 29 s that SQS_CONFIG is sized for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from incident_loop.aws import CONFIGS, DYNAMODB_CONFIG, SECRETS_CONFIG, SQS_CONFIG, worst_case_s


class _Failing(BaseHTTPRequestHandler):
    """Answers every request 500 (a transient error botocore retries), counting them."""

    count = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).count += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_endpoint() -> Iterator[str]:
    _Failing.count = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(service: str, endpoint: str) -> Any:
    config = CONFIGS[service]
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=config)


def test_dynamodb_makes_two_attempts_and_sqs_three(failing_endpoint: str) -> None:
    with pytest.raises(ClientError):
        _client("dynamodb", failing_endpoint).get_item(TableName="t", Key={"k": {"S": "v"}})
    assert _Failing.count == 2
    _Failing.count = 0
    with pytest.raises(ClientError):
        _client("sqs", failing_endpoint).send_message(QueueUrl=failing_endpoint + "/q", MessageBody="m")
    assert _Failing.count == 3


def test_the_worst_cases_fit_the_bounds_they_are_sized_for() -> None:
    assert worst_case_s(DYNAMODB_CONFIG) == 2 * (1.0 + 2.0) + 1  # a breaker's read: its fail mode decides after
    assert worst_case_s(SQS_CONFIG) == 3 * (2.0 + 5.0) + 1 + 2 < 29  # inside API Gateway's 29 s


def test_the_secret_stores_make_two_bounded_attempts_where_botocore_would_wait_minutes(failing_endpoint: str) -> None:
    """SSM and Secrets Manager had botocore's defaults (60 s a read, retried): a hung store held PUT /notifications
    past API Gateway's 29 s (a 504) and a skill's call past its budget."""
    for service, call in (("ssm", lambda c: c.get_parameter(Name="/p", WithDecryption=True)),
                          ("secretsmanager", lambda c: c.get_secret_value(SecretId="s"))):
        _Failing.count = 0
        with pytest.raises(ClientError):
            call(_client(service, failing_endpoint))
        assert _Failing.count == 2, service
    assert worst_case_s(SECRETS_CONFIG) == 2 * (2.0 + 5.0) + 1 < 29
