"""SQS behind the StageQueues port: the loop hands envelopes to the queue of the stage they name.

Which queue feeds which stage is the stage registry's to say (incident_loop.loop.registry): the
sender is given that lookup, and knows SQS only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from incident_loop import aws
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.settings import Settings, get_settings


class QueueUnconfigured(RuntimeError):
    """No queue URL is configured for the stage a message must go to."""


class QueueUnavailable(RuntimeError):
    """The stage's queue did not take the message: it does not exist, or SQS could not be reached."""


# The URL of the queue that feeds a stage, from the settings (QueueUnconfigured when there is none).
QueueLookup = Callable[[LoopStage, Settings], str]


class SqsStageQueues:
    """Sends each envelope to the queue of its stage (a StageQueues)."""

    def __init__(self, settings: Settings | None = None, client: Any | None = None, *,
                 url_for: QueueLookup) -> None:
        self._settings = settings or get_settings()
        self._client = client
        self._url_for = url_for

    def send(self, envelope: Envelope) -> None:
        """Send to the stage's queue; QueueUnavailable when SQS refuses or cannot be reached."""
        client = self._client or aws.sqs()
        url = self._url_for(envelope.stage, self._settings)
        try:
            client.send_message(QueueUrl=url, MessageBody=envelope.model_dump_json())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise QueueUnavailable(f"queue {url} refused the message ({code})") from exc
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, credentials
            raise QueueUnavailable(f"queue {url} is unreachable ({type(exc).__name__})") from exc
