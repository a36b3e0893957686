"""SQS behind a small interface: the loop hands envelopes to the next stage's queue."""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import LoopStage
from incident_loop.settings import Settings, get_settings


class QueueUnconfigured(RuntimeError):
    """No queue URL is configured for the stage a message must go to."""


class QueueUnavailable(RuntimeError):
    """The stage's queue did not take the message: it does not exist, or SQS could not be reached."""


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
        """Send to the stage's queue; QueueUnavailable when SQS refuses or cannot be reached."""
        client = self._client or _sqs()
        url = queue_url_for(envelope.stage, self._settings)
        try:
            client.send_message(QueueUrl=url, MessageBody=envelope.model_dump_json())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise QueueUnavailable(f"queue {url} refused the message ({code})") from exc
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, credentials
            raise QueueUnavailable(f"queue {url} is unreachable ({type(exc).__name__})") from exc


class MemoryStageQueues:
    """An in-memory fake for unit tests: remembers what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)
