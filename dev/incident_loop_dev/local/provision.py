"""Creates the template's queues, tables and secrets on moto and resolves the functions' environment."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3

from incident_loop_dev.local.template import AppSpec


class Resources:
    """The template's resources as created here: queue URLs and ARNs, table names, secret ARNs."""

    def __init__(self, spec: AppSpec, endpoint_url: str | None, parameters: dict[str, str],
                 secret_values: dict[str, str]) -> None:
        self.spec = spec
        self.endpoint_url = endpoint_url
        self.parameters = parameters
        self.secret_values = secret_values
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        self.table_names: dict[str, str] = {}
        self.secret_arns: dict[str, str] = {}
        self.sqs = boto3.client("sqs", endpoint_url=endpoint_url)
        self.dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)

    def provision(self) -> None:
        """Create every queue (DLQs first), table and secret of the template."""
        pending = dict(self.spec.queues)
        while pending:
            progressed = False
            for logical_id, resource in list(pending.items()):
                props = dict(resource.get("Properties") or {})
                redrive = props.get("RedrivePolicy")
                if redrive and queue_ref(redrive["deadLetterTargetArn"]) not in self.queue_arns:
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
                {"deadLetterTargetArn": self.queue_arns[queue_ref(policy["deadLetterTargetArn"])],
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

    def resolve(self, value: Any) -> str | None:
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


def queue_ref(value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise ValueError(f"unsupported dead-letter target {value!r}")
