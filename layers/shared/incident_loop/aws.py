"""The container's AWS clients: one per service, made on first use, reused while warm, with one reset.

AWS_ENDPOINT_URL in the environment points every client at moto locally. Stores take a client as an
optional parameter, so tests pass their own; everything else asks here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# DynamoDB serves the breakers, which sit on hot paths: a DynamoDB that does not answer must cost little
# before a breaker's fail mode decides (1 s to connect, 2 s to read, 2 attempts). Candidate settings.
# (botocore's `max_attempts` counts retries after the first attempt, `total_max_attempts` every attempt.)
DYNAMODB_CONFIG = Config(connect_timeout=1.0, read_timeout=2.0,
                         retries={"total_max_attempts": 2, "mode": "standard"})
# SQS takes every hand-off after a commit: a send that hangs must fail well inside API Gateway's 29 s and the
# functions' timeouts (botocore's defaults are 60 s per read, retried), so that it is left to the redelivery
# or the relay rather than ending the invocation (2 s to connect, 5 s to read, 3 attempts).
SQS_CONFIG = Config(connect_timeout=2.0, read_timeout=5.0, retries={"total_max_attempts": 3, "mode": "standard"})
# SSM and Secrets Manager hold the skills' secrets and the tenants' Slack grants, read by PUT /notifications too: a
# store that hangs must answer inside API Gateway's 29 s (a 503 to retry, not a 504) and inside a skill's budget
# (2 s to connect, 5 s to read, 2 attempts: 15 s at worst; values are cached for 5 minutes besides).
SECRETS_CONFIG = Config(connect_timeout=2.0, read_timeout=5.0, retries={"total_max_attempts": 2, "mode": "standard"})
CONFIGS: dict[str, Config] = {"dynamodb": DYNAMODB_CONFIG, "sqs": SQS_CONFIG, "ssm": SECRETS_CONFIG,
                              "secretsmanager": SECRETS_CONFIG}


def worst_case_s(config: Config) -> float:
    """The longest one call under `config` takes: every attempt at its connect and read bounds, and the standard
    retry mode's backoff between them (at most 2**i s before retry i + 1)."""
    attempts = int(config.retries["total_max_attempts"])
    return attempts * (config.connect_timeout + config.read_timeout) + sum(2.0**i for i in range(attempts - 1))


@cache
def client(service: str) -> Any:
    """The container's client of one AWS service (with that service's config, if it has one)."""
    return boto3.client(service, config=CONFIGS.get(service))


def sqs() -> Any:
    """The container's SQS client."""
    return client("sqs")


def dynamodb() -> Any:
    """The container's DynamoDB client (the breakers' state)."""
    return client("dynamodb")


def reset() -> None:
    """Forget every client, as a cold container would (local runs and tests, after the environment changed)."""
    client.cache_clear()


def ensure_table(client: Any, table: str, key: str, ttl_attribute: str | None = None) -> None:
    """Create a table keyed on one string attribute if it is missing, with its TTL attribute if it has one
    (local runs, tests and benchmarks; in AWS the template creates every table)."""
    try:
        client.describe_table(TableName=table)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    client.create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl_attribute:
        client.update_time_to_live(TableName=table,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute})
