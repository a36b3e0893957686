"""SQS behind the StageQueues port: the loop hands envelopes to the queue of the stage they name.

Which queue feeds which stage is the stage registry's to say (incident_loop.loop.registry): the
sender is given that lookup, and knows SQS only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

BATCH = 10  # SendMessageBatch takes at most ten entries


def send_batches(client: Any, url: str, bodies: Sequence[str],
                 attributes: Sequence[dict[str, Any] | None] | None = None) -> list[QueueUnavailable | None]:
    """Send the bodies to one queue, ten to a call; for each, None once SQS took it, or why it did not."""
    answers: list[QueueUnavailable | None] = [None] * len(bodies)
    for start in range(0, len(bodies), BATCH):
        entries = [{"Id": str(i), "MessageBody": bodies[i],
                    **({"MessageAttributes": attributes[i]} if attributes and attributes[i] else {})}
                   for i in range(start, min(start + BATCH, len(bodies)))]
        try:
            failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            refused = QueueUnavailable(f"queue {url} refused the messages ({code})")
            failed = [{"Id": e["Id"], "Code": code, "error": refused} for e in entries]
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, credentials
            gone = QueueUnavailable(f"queue {url} is unreachable ({type(exc).__name__})")
            failed = [{"Id": e["Id"], "error": gone} for e in entries]
        for entry in failed:
            answers[int(entry["Id"])] = entry.get("error") or QueueUnavailable(
                f"queue {url} refused the message ({entry.get('Code', 'Failed')})")
    return answers


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

    def send_all(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        """Send each to its stage's queue, ten to a SendMessageBatch; for each, None or why it was not sent."""
        answers: list[Exception | None] = [None] * len(envelopes)
        by_url: dict[str, list[int]] = {}
        for i, envelope in enumerate(envelopes):
            try:
                by_url.setdefault(self._url_for(envelope.stage, self._settings), []).append(i)
            except QueueUnconfigured as exc:
                answers[i] = exc
        client = self._client or aws.sqs()
        for url, indexes in by_url.items():
            sent = send_batches(client, url, [envelopes[i].model_dump_json() for i in indexes])
            for i, answer in zip(indexes, sent, strict=True):
                answers[i] = answer
        return answers
