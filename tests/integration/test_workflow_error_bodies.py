"""A webhook endpoint whose error body holds NUL bytes (a UTF-16 body): the op's outcome is recorded, its NULs
replaced, where PostgreSQL refused the error text, left the op pending and sent the webhook again on every
delivery."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from fakes.workflows import MemoryQueue

from incident_loop.schemas.workflows import WorkflowDefinition
from incident_loop.settings import Settings
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.signing import new_secret
from incident_loop.skills.transport import Urllib3Transport
from incident_loop.skills.webhook_send import WebhookSendSkill
from incident_loop.stores.audit import PostgresAudit
from incident_loop.workflows.runner import run_workflow
from incident_loop.workflows.service import submit_workflow
from incident_loop_dev.fakes.aws import IDEMPOTENCY_TABLE, KV_TABLE, skill_breakers


class Receiver:
    """127.0.0.1: answers every POST with `status` and `body`, counting the requests."""

    def __init__(self, status: int, body: bytes) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests += 1
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Source:
    def __init__(self, skill: Any) -> None:
        self.skill = skill

    def get(self, name: str) -> Any:
        return self.skill

    def names(self) -> tuple[str, ...]:
        return ("webhook_send",)


def _world(skill_tables: Any, conn: Any, tenant: str, receiver: Receiver) -> tuple[Any, Any, Any, Any]:
    skill = WebhookSendSkill(
        kv=KvTable(KV_TABLE, skill_tables), transport=Urllib3Transport(), resolver=lambda h, p: ["127.0.0.1"],
        breaker_for=skill_breakers(skill_tables), settings=Settings(webhook_allow_hosts="127.0.0.1"),
        persistence=DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=skill_tables))
    skills, queue, audit = Source(skill), MemoryQueue(), PostgresAudit(conn)
    definition = WorkflowDefinition.model_validate({"steps": [{"skill": "webhook_send", "args": {
        "url": receiver.url, "payload": {"n": 1}, "secrets": [new_secret()]}}]})
    accepted = submit_workflow(definition, tenant, audit=audit, queue=queue, skills=skills)
    [message] = queue.sent
    return skills, queue, audit, (accepted.workflow_run_id, message)


def test_a_4xx_whose_body_holds_nul_bytes_fails_its_op_once_and_is_not_sent_again(
        conn: Any, tenant: str, skill_tables: Any) -> None:
    receiver = Receiver(400, "bad request".encode("utf-16-le"))
    try:
        skills, queue, audit, (run_id, message) = _world(skill_tables, conn, tenant, receiver)
        for _ in range(3):  # the same SQS record delivered three times
            run_workflow(message, audit=audit, skills=skills, queue=queue)
        with audit.begin(tenant):
            run = audit.run(tenant, run_id)
            [op] = audit.ops(tenant, run_id)
        assert (run["status"], op["status"], receiver.requests) == ("failed", "failed", 1)
        assert "\x00" not in op["error_message"] and "\ufffd" in op["error_message"]
    finally:
        receiver.close()


def test_a_503_whose_body_holds_nul_bytes_keeps_its_retryable_error_and_retry_after(
        conn: Any, tenant: str, skill_tables: Any) -> None:
    from incident_loop.skills.errors import SkillError

    receiver = Receiver(503, "busy".encode("utf-16-le"))
    try:
        skills, queue, audit, (run_id, message) = _world(skill_tables, conn, tenant, receiver)
        with pytest.raises(Exception) as caught:
            run_workflow(message, audit=audit, skills=skills, queue=queue)
        # the consumer sets the redelivery time (Retry-After, webhook schedule) only for a SkillError
        assert isinstance(caught.value, SkillError), type(caught.value)
    finally:
        receiver.close()
