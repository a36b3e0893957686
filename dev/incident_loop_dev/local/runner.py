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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from incident_loop_dev.local.services import function_role_url
from incident_loop_dev.local.template import AppSpec, FunctionSpec, SqsSource, read_app

Invoker = Callable[[str, dict[str, Any]], Any]


@dataclass
class FakeContext:
    """Enough of a Lambda context for Powertools."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


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
        self.secret_values = secret_values or {}
        self.secret_arns: dict[str, str] = {}
        self._invoker = invoker
        self.spec: AppSpec = read_app(root)
        self.endpoint_url = endpoint_url
        self.database_url = database_url
        self.parameters = parameters or {}
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        self.table_names: dict[str, str] = {}
        self._modules: dict[str, ModuleType] = {}
        self.exported: list[str] = []
        self.sqs = boto3.client("sqs", endpoint_url=endpoint_url)
        self.dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)

    # -- provisioning -------------------------------------------------------------------------
    def provision(self) -> None:
        """Create every queue (DLQs first) and table of the template, then export the environment."""
        pending = dict(self.spec.queues)
        while pending:
            progressed = False
            for logical_id, resource in list(pending.items()):
                props = dict(resource.get("Properties") or {})
                redrive = props.get("RedrivePolicy")
                if redrive and _queue_ref(redrive["deadLetterTargetArn"]) not in self.queue_arns:
                    continue
                self._create_queue(logical_id, props)
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise ValueError(f"queues with unresolvable redrive targets: {sorted(pending)}")
        for logical_id, resource in self.spec.tables.items():
            self._create_table(logical_id, resource.get("Properties") or {})
        for logical_id, resource in self.spec.secrets.items():
            self._create_secret(logical_id, resource.get("Properties") or {})
        self._export_environment()

    def _create_secret(self, logical_id: str, props: dict[str, Any]) -> None:
        value = self.secret_values.get(logical_id)
        if value is None:  # what GenerateSecretString would make
            generate = props.get("GenerateSecretString") or {}
            document = json.loads(generate.get("SecretStringTemplate") or "{}")
            document[generate.get("GenerateStringKey", "password")] = uuid.uuid4().hex + uuid.uuid4().hex
            value = json.dumps(document)
        client = boto3.client("secretsmanager", endpoint_url=self.endpoint_url)
        name = f"incident-loop-{logical_id}"
        try:
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except client.exceptions.ResourceExistsException:
            arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        self.secret_arns[logical_id] = arn

    def _create_queue(self, logical_id: str, props: dict[str, Any]) -> None:
        attributes: dict[str, str] = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in props:
                attributes[key] = str(props[key])
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": self.queue_arns[_queue_ref(policy["deadLetterTargetArn"])],
                 "maxReceiveCount": int(policy["maxReceiveCount"])}
            )
        url = self.sqs.create_queue(QueueName=f"incident-loop-{logical_id}", Attributes=attributes)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_urls[logical_id], self.queue_arns[logical_id] = url, arn

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> None:
        name = f"incident-loop-{logical_id}"
        self.dynamodb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            self.dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
            )
        self.table_names[logical_id] = name

    def _resolve(self, value: Any) -> str | None:
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in self.queue_urls:
                return self.queue_urls[ref]
            if ref in self.table_names:
                return self.table_names[ref]
            if ref in self.secret_arns:
                return self.secret_arns[ref]
            if ref in self.parameters:
                return self.parameters[ref]
            default = (self.spec.parameters.get(ref) or {}).get("Default")
            return None if default in (None, "") else str(default)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return self.queue_arns.get(value["Fn::GetAtt"][0])
        if isinstance(value, dict):
            return None  # intrinsic functions with no local meaning (e.g. !If on a condition)
        return str(value)

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
        module_name, func_name = fn.handler.rsplit(".", 1)
        key = f"_local_{fn.logical_id}"
        if key not in self._modules:
            path = fn.code_dir / f"{module_name.replace('.', '/')}.py"
            spec = importlib.util.spec_from_file_location(key, path)
            assert spec and spec.loader, path
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
            self._modules[key] = module
        return getattr(self._modules[key], func_name)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        if self._invoker is not None:
            return self._invoker(logical_id, event)
        fn = self.spec.functions[logical_id]
        return self.handler(fn)(event, FakeContext(function_name=logical_id))

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """One function's variables as the template resolves them here (after provision())."""
        resolved = {name: self._resolve(raw) for name, raw in self.spec.functions[logical_id].environment.items()}
        return {name: value for name, value in resolved.items() if value is not None}

    def request(
        self, method: str, path: str, tenant_id: str, body: Any = None, query: dict[str, str] | None = None,
        claims: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send an API Gateway (REST proxy) request to the function whose route serves it."""
        status, _, body = self.respond(method, path, tenant_id, body, query, claims)
        return status, body

    def respond(
        self, method: str, path: str, tenant_id: str, body: Any = None, query: dict[str, str] | None = None,
        claims: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """request(), with the response's headers: (status, headers, JSON or text)."""
        for fn in self.spec.functions.values():
            for route in fn.routes:
                params = route.match(method, path)
                if params is None:
                    continue
                event = api_event(method, path, route.path, params, tenant_id, body, query)
                event["requestContext"]["authorizer"].update(claims or {})
                response = self.invoke(fn.logical_id, event)
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
        url = self.queue_urls[_queue_ref(policy["deadLetterTargetArn"])]
        found = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return found.get("Messages", [])


# Everything a warm container caches that depends on the environment, beside its AWS clients (aws.reset):
# settings, the idempotency layer, breakers.
CONTAINER_CACHES = [
    ("incident_loop.settings", "get_settings"), ("incident_loop.loop.stage", "idempotency_config"),
    ("incident_loop.loop.stage", "_persistence"), ("incident_loop.breakers", "named"),
]


def reset_container_caches() -> None:
    """Start as a cold container would: re-read settings, new clients, no cached breakers, no connection."""
    import importlib

    for module, name in CONTAINER_CACHES:
        getattr(importlib.import_module(module), name).cache_clear()
    from incident_loop import aws, db
    from incident_loop.failures import persist

    aws.reset()
    db.reset_connection()
    persist.connections.close()


def _queue_ref(value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise ValueError(f"unsupported dead-letter target {value!r}")


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """The record shape Lambda's SQS event source delivers."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", "local"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
        },
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def api_event(
    method: str,
    path: str,
    resource: str,
    params: dict[str, str],
    tenant_id: str,
    body: Any,
    query: dict[str, str] | None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, with the tenant in the authorizer's context."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "authorizer": {"tenant_id": tenant_id},
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        "isBase64Encoded": False,
    }
