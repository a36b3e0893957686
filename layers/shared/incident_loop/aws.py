"""The container's AWS clients: one per service, made on first use, reused while warm, with one reset.

AWS_ENDPOINT_URL in the environment points every client at moto locally. Stores take a client as an
optional parameter, so tests pass their own; everything else asks here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# DynamoDB serves the breakers, which sit on hot paths: a DynamoDB that does not answer must cost little
# before a breaker's fail mode decides (1 s to connect, 2 s to read, 2 attempts). Candidate settings.
DYNAMODB_CONFIG = Config(connect_timeout=1.0, read_timeout=2.0, retries={"max_attempts": 2, "mode": "standard"})
CONFIGS: dict[str, Config] = {"dynamodb": DYNAMODB_CONFIG}


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
