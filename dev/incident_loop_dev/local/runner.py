"""Runs the SAM application locally: moto for AWS, real handlers, wiring read from template.yaml.

Queues and tables are created from the template; each queue's messages are delivered, in
batches, to the function whose SQS event source names it; partial batch failures are honoured
(failed records are made visible again, succeeded ones deleted) and moto's redrive moves a
message to its DLQ after maxReceiveCount receives, as SQS would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from incident_loop_dev.local.events import FakeContext, api_event, sqs_record
from incident_loop_dev.local.provision import Resources, queue_ref
from incident_loop_dev.local.services import function_role_url
from incident_loop_dev.local.template import AppSpec, FunctionSpec, SqsSource, read_app

__all__ = ["DeliveryStats", "FakeContext", "LocalApp", "api_event", "reset_container_caches", "sqs_record"]

Invoker = Callable[[str, dict[str, Any]], Any]


def handler_module(code_dir: Path, handler: str, name: str) -> ModuleType:
    """The module of a function's Handler ("app.handler") loaded from its CodeUri folder, as Lambda
    does, under `name` (each function's app.py is its own module)."""
    module_name = handler.rsplit(".", 1)[0]
    path = code_dir / f"{module_name.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The stage the local stack runs as: its skills' secrets live under incident-loop/local/ (settings.stage).
LOCAL_STAGE = "local"
# A synchronous invocation's answer, at most (Lambda's quota, 6 MB): a larger one fails the invocation.
LAMBDA_ANSWER_BYTES = 6 * 1024 * 1024


@dataclass
class DeliveryStats:
    invocations: int = 0
    delivered: int = 0
    failed: int = 0
    per_function: dict[str, int] = field(default_factory=dict)
    responses: list[Any] = field(default_factory=list)  # what each invocation answered (or raised)


class LocalApp:
    """The application on moto (`endpoint_url`) and PostgreSQL (`database_url`, as the function role)."""

    def __init__(
        self, root: Path, endpoint_url: str | None, database_url: str, parameters: dict[str, str] | None = None,
        *, secret_values: dict[str, str] | None = None, invoker: Invoker | None = None,
    ):
        """`secret_values` gives a template secret its value (else one is generated as CloudFormation would);
        `invoker(logical_id, event)` runs a function (default: its handler in this process)."""
        self.root = root
        self._invoker = invoker
        self.spec: AppSpec = read_app(root)
        self.endpoint_url = endpoint_url
        self.database_url = database_url
        self.resources = Resources(self.spec, endpoint_url, {"Stage": LOCAL_STAGE, **(parameters or {})},
                                   secret_values or {})
        self.sqs = self.resources.sqs
        self.dynamodb = self.resources.dynamodb
        self._modules: dict[str, ModuleType] = {}
        self.exported: list[str] = []

    @property
    def queue_urls(self) -> dict[str, str]:
        return self.resources.queue_urls

    @property
    def queue_arns(self) -> dict[str, str]:
        return self.resources.queue_arns

    @property
    def table_names(self) -> dict[str, str]:
        return self.resources.table_names

    @property
    def secret_arns(self) -> dict[str, str]:
        return self.resources.secret_arns

    # -- provisioning -------------------------------------------------------------------------
    def provision(self) -> None:
        """Create every queue (DLQs first), table and secret of the template, then export the environment."""
        self.resources.provision()
        self._export_environment()

    def _resolve(self, value: Any) -> str | None:
        return self.resources.resolve(value)

    def _export_environment(self) -> None:
        """Every function's variables, resolved; one process runs them all, so names must agree."""
        merged: dict[str, str] = {}
        for fn in self.spec.functions.values():
            for name, raw in fn.environment.items():
                value = self._resolve(raw)
                if value is None:
                    continue
                if name in merged and merged[name] != value:
                    raise ValueError(f"{name} differs between functions; the local runner needs one value")
                merged[name] = value
        # The functions connect as the function role (row-level security applies), never as the owner.
        merged["DATABASE_URL"] = function_role_url(self.database_url)
        if self.endpoint_url:  # boto3 in the handlers talks to moto's server
            merged["AWS_ENDPOINT_URL"] = self.endpoint_url
        merged.pop("DB_SECRET_ARN", None)
        os.environ.update(merged)
        self.exported = sorted(merged)
        reset_container_caches()

    # -- invoking -----------------------------------------------------------------------------
    def handler(self, fn: FunctionSpec) -> Any:
        key = f"_local_{fn.logical_id}"
        if key not in self._modules:
            self._modules[key] = handler_module(fn.code_dir, fn.handler, key)
        return getattr(self._modules[key], fn.handler.rsplit(".", 1)[1])

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        if self._invoker is not None:
            return self._invoker(logical_id, event)
        fn = self.spec.functions[logical_id]
        return self.handler(fn)(event, FakeContext(function_name=logical_id, timeout_s=fn.timeout_s))

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """One function's variables as the template resolves them here (after provision())."""
        resolved = {name: self._resolve(raw) for name, raw in self.spec.functions[logical_id].environment.items()}
        return {name: value for name, value in resolved.items() if value is not None}

    def request(
        self, method: str, path: str, tenant_id: str, body: Any = None, query: dict[str, str] | None = None,
        claims: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send an API Gateway (REST proxy) request to the function whose route serves it."""
        status, _, body = self.respond(method, path, tenant_id, body, query, claims, headers)
        return status, body

    def respond(
        self, method: str, path: str, tenant_id: str, body: Any = None, query: dict[str, str] | None = None,
        claims: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """request(), with the response's headers: (status, headers, JSON or text)."""
        for fn in self.spec.functions.values():
            for route in fn.routes:
                params = route.match(method, path)
                if params is None:
                    continue
                event = api_event(method, path, route.path, params, tenant_id, body, query, headers)
                event["requestContext"]["authorizer"].update(claims or {})
                response = self.invoke(fn.logical_id, event)
                if len(json.dumps(response).encode()) > LAMBDA_ANSWER_BYTES:  # Lambda refuses it; API Gateway: 502
                    return 502, {"Content-Type": "application/json"}, {"message": "Internal server error"}
                text = response.get("body") or ""
                headers = {**(response.get("headers") or {}),
                           **{k: ",".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}}
                is_json = "json" in headers.get("Content-Type", "")
                return response["statusCode"], headers, json.loads(text) if is_json and text else text
        raise LookupError(f"no function serves {method} {path} in template.yaml")

    def send(self, queue_logical_id: str, body: Any) -> None:
        """Put a message on a queue of the template (e.g. the ingest queue)."""
        self.sqs.send_message(QueueUrl=self.queue_urls[queue_logical_id],
                              MessageBody=body if isinstance(body, str) else json.dumps(body))

    def depth(self, queue_logical_id: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_urls[queue_logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, *, duplicate: bool = False, max_rounds: int = 200) -> DeliveryStats:
        """Deliver until every event-source queue is empty; `duplicate` delivers each batch twice."""
        stats = DeliveryStats()
        for _ in range(max_rounds):
            moved = self.deliver_round(stats, duplicate=duplicate)
            if not moved and all(self.depth(src.queue) == 0 for _, src in self._sources()):
                return stats
        raise RuntimeError(f"queues still not empty after {max_rounds} rounds")

    def deliver(self, queue_logical_id: str) -> Any:
        """One batch from one queue to its function, settled as SQS would; what the function answered.

        None when the queue was empty; an invocation error is returned (the batch failed whole).
        """
        fn, src = next((f, s) for f, s in self._sources() if s.queue == queue_logical_id)
        stats = DeliveryStats()
        return stats.responses[-1] if self._deliver_batch(fn, src, stats, False) else None

    def _sources(self) -> list[tuple[FunctionSpec, SqsSource]]:
        return [(fn, src) for fn in self.spec.functions.values() for src in fn.sqs_sources]

    def deliver_round(self, stats: DeliveryStats | None = None, *, duplicate: bool = False) -> bool:
        """One batch from every event-source queue (what one poll of each mapping would do)."""
        stats = stats or DeliveryStats()
        moved = False
        for fn, src in self._sources():
            moved |= self._deliver_batch(fn, src, stats, duplicate)
        return moved

    def _deliver_batch(self, fn: FunctionSpec, src: SqsSource, stats: DeliveryStats, duplicate: bool) -> bool:
        url = self.queue_urls[src.queue]
        messages = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(src.batch_size, 10), AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return False
        event = {"Records": [sqs_record(m, self.queue_arns[src.queue]) for m in messages]}
        failed: set[str] = set()
        for _ in range(2 if duplicate else 1):
            stats.invocations += 1
            try:
                response = self.invoke(fn.logical_id, event) or {}
            except Exception as exc:  # noqa: BLE001 - an invocation error fails the whole batch, as in Lambda
                stats.responses.append(exc)
                failed = {m["MessageId"] for m in messages}
                continue
            stats.responses.append(response)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        if failed and not src.partial_failures:
            failed = {m["MessageId"] for m in messages}  # without partial responses the batch fails whole
        for message in messages:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                stats.failed += 1
            else:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                stats.delivered += 1
        stats.per_function[fn.logical_id] = stats.per_function.get(fn.logical_id, 0) + len(messages)
        return True

    def dlq_messages(self, queue_logical_id: str) -> list[dict[str, Any]]:
        """Everything on a queue's dead-letter queue (read and made visible again)."""
        policy = (self.spec.queues[queue_logical_id].get("Properties") or {})["RedrivePolicy"]
        url = self.queue_urls[queue_ref(policy["deadLetterTargetArn"])]
        found = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return found.get("Messages", [])


# Everything a warm container caches that depends on the environment, beside its AWS clients (aws.reset):
# settings, breakers, the workflow runner's idempotency layer, the skills' parameter providers and transport.
CONTAINER_CACHES = [
    ("incident_loop.settings", "get_settings"), ("incident_loop.breakers", "named"),
    ("incident_loop.workflows.consumer", "idempotency_config"), ("incident_loop.workflows.consumer", "_persistence"),
    ("incident_loop.skills.secrets", "_ssm"), ("incident_loop.skills.secrets", "_secrets"),
    ("incident_loop.skills.wiring", "default_transport"),
]


def reset_container_caches() -> None:
    """Start as a cold container would: re-read settings, new clients, no cached breakers, no connection."""
    import importlib

    for module, name in CONTAINER_CACHES:
        getattr(importlib.import_module(module), name).cache_clear()
    from incident_loop import aws, db
    from incident_loop.failures import persist
    from incident_loop.skills import registry

    registry.reset()  # the skills' instances hold settings and clients of the environment they were made in
    aws.reset()
    db.reset_connection()
    persist.connections.close()


