"""SQS behind the WorkflowQueue port: runs handed to the runner (the workflow queue)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from incident_loop import aws
from incident_loop.observability import logger, metrics
from incident_loop.schemas.workflows import WorkflowMessage
from incident_loop.settings import Settings, get_settings
from incident_loop.stores.queues import QueueUnavailable, QueueUnconfigured


class SqsWorkflowQueue:
    """Sends workflow messages to WORKFLOW_QUEUE_URL (a WorkflowQueue)."""

    def __init__(self, settings: Settings | None = None, client: Any | None = None) -> None:
        self._settings = settings or get_settings()
        self._client = client

    def send(self, message: WorkflowMessage) -> None:
        """QueueUnconfigured without a queue URL; QueueUnavailable when SQS refuses or cannot be reached."""
        url = self._settings.workflow_queue_url
        if not url:
            raise QueueUnconfigured("no workflow queue configured (WORKFLOW_QUEUE_URL)")
        client = self._client or aws.sqs()
        try:
            client.send_message(QueueUrl=url, MessageBody=message.model_dump_json())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise QueueUnavailable(f"queue {url} refused the message ({code})") from exc
        except BotoCoreError as exc:
            raise QueueUnavailable(f"queue {url} is unreachable ({type(exc).__name__})") from exc


def send_after_commit(queue: Any, message: WorkflowMessage) -> bool:
    """Send to `queue` (a workflows.ports.WorkflowQueue) the message of a run its caller has just committed;
    False when SQS refuses it. The commit is the acceptance, so a refusal is logged, counted
    (WorkflowMessagesLeftToRelay) and left to the relay (workflows.relay), which sends the message again
    once the run has waited."""
    try:
        queue.send(message)
    except QueueUnavailable:
        logger.warning("run's message left to the relay", workflow_run_id=message.workflow_run_id, exc_info=True)
        metrics.add_metric(name="WorkflowMessagesLeftToRelay", unit=MetricUnit.Count, value=1)
        return False
    except QueueUnconfigured:  # a function deployed without WORKFLOW_QUEUE_URL: its caller's commit stands
        logger.error("no workflow queue configured: run's message left to the relay",
                     workflow_run_id=message.workflow_run_id)
        metrics.add_metric(name="WorkflowMessagesLeftToRelay", unit=MetricUnit.Count, value=1)
        return False
    return True
