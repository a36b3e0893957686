"""SQS behind a small interface: the loop hands envelopes to the next stage's queue."""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

import boto3

from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import LoopStage
from incident_loop.settings import Settings, get_settings


class QueueUnconfigured(RuntimeError):
    """No queue URL is configured for the stage a message must go to."""


class StageQueues(Protocol):
    def send(self, envelope: Envelope) -> None: ...


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def queue_url_for(stage: LoopStage, settings: Settings) -> str:
    """The queue that feeds the function performing `stage`."""
    urls = {
        LoopStage.PATTERN_MATCHED: settings.pattern_queue_url,
        LoopStage.RECOVERY_SUGGESTED: settings.recovery_queue_url,
        LoopStage.POLICY_GENERATED: settings.policy_queue_url,
        LoopStage.ROUTING_ADJUSTED: settings.routing_queue_url,
    }
    url = urls.get(stage)
    if not url:
        raise QueueUnconfigured(f"no queue configured for stage {stage.value}")
    return url


class SqsStageQueues:
    """Sends each envelope to the queue of its stage."""

    def __init__(self, settings: Settings | None = None, client: Any | None = None) -> None:
        self._settings = settings or get_settings()
        self._client = client

    def send(self, envelope: Envelope) -> None:
        client = self._client or _sqs()
        client.send_message(
            QueueUrl=queue_url_for(envelope.stage, self._settings),
            MessageBody=envelope.model_dump_json(),
        )


class MemoryStageQueues:
    """An in-memory fake for unit tests: remembers what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)
