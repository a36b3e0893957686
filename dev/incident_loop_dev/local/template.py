"""Reading template.yaml: the local runner's only source of which queue feeds which function."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !GetAtt, ...) into their long form."""


def _tag(name: str):  # type: ignore[no-untyped-def]
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


_CfnLoader.add_constructor("!Ref", _tag("Ref"))
for _short in ("GetAtt", "Sub", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split", "FindInMap",
               "ImportValue", "GetAZs", "Base64", "Condition"):
    _CfnLoader.add_constructor(f"!{_short}", _tag("Condition" if _short == "Condition" else f"Fn::{_short}"))


def load_template(path: Path) -> dict[str, Any]:
    """template.yaml as plain data, short tags expanded."""
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class SqsSource:
    queue: str  # logical id of the queue
    batch_size: int
    partial_failures: bool


@dataclass
class ApiRoute:
    method: str
    path: str
    authorizer: str | None = None  # the Api's default authorizer unless the event names one ("NONE": none)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route serves the request, else None."""
        if method.upper() != self.method.upper():
            return None
        pattern = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return None if found is None else found.groupdict()


@dataclass
class Authorizer:
    """A Lambda TOKEN authorizer of the template's Api."""

    name: str
    function: str  # logical id of the authorizer function
    header: str
    validation: str | None
    ttl_s: int


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, Any]
    sqs_sources: list[SqsSource] = field(default_factory=list)
    routes: list[ApiRoute] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)  # Schedule events' expressions
    timeout_s: float = 3.0  # its Timeout (or the Globals'), as Lambda gives it


@dataclass
class AppSpec:
    """The parts of the template the local runner acts on."""

    queues: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, Any]]
    functions: dict[str, FunctionSpec]
    parameters: dict[str, Any]
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    default_authorizer: str | None = None

    def authorizer_for(self, route: ApiRoute) -> Authorizer | None:
        """The authorizer that guards a route (None: the route is open)."""
        name = route.authorizer or self.default_authorizer
        return None if name in (None, "NONE") else self.authorizers[name]


def _queue_of(ref: Any) -> str:
    if isinstance(ref, dict) and "Fn::GetAtt" in ref:
        return str(ref["Fn::GetAtt"][0])
    if isinstance(ref, dict) and "Ref" in ref:
        return str(ref["Ref"])
    raise ValueError(f"unsupported queue reference in an SQS event: {ref!r}")


def read_app(root: Path) -> AppSpec:
    """Queues, tables, functions with their event sources and routes, from root/template.yaml."""
    template = load_template(root / "template.yaml")
    resources: dict[str, Any] = template.get("Resources", {})
    global_env = (template.get("Globals", {}).get("Function", {}).get("Environment", {}) or {}).get(
        "Variables", {}
    )
    global_timeout = (template.get("Globals", {}).get("Function", {}) or {}).get("Timeout", 3)
    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        env = {**global_env, **((props.get("Environment") or {}).get("Variables") or {})}
        spec = FunctionSpec(logical_id, root / props["CodeUri"], props["Handler"], env,
                            timeout_s=float(props.get("Timeout", global_timeout)))
        for event in (props.get("Events") or {}).values():
            eprops = event.get("Properties", {})
            if event.get("Type") == "SQS":
                spec.sqs_sources.append(
                    SqsSource(
                        queue=_queue_of(eprops["Queue"]),
                        batch_size=int(eprops.get("BatchSize", 10)),
                        partial_failures="ReportBatchItemFailures" in (eprops.get("FunctionResponseTypes") or []),
                    )
                )
            elif event.get("Type") == "Api":
                named = (eprops.get("Auth") or {}).get("Authorizer")
                spec.routes.append(ApiRoute(eprops["Method"], eprops["Path"], named))
            elif event.get("Type") == "Schedule":
                spec.schedules.append(str(eprops.get("Schedule")))
        functions[logical_id] = spec
    authorizers: dict[str, Authorizer] = {}
    default_authorizer = None
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Api":
            continue
        auth = (resource.get("Properties") or {}).get("Auth") or {}
        default_authorizer = auth.get("DefaultAuthorizer")
        for name, config in (auth.get("Authorizers") or {}).items():
            identity = config.get("Identity") or {}
            authorizers[name] = Authorizer(
                name=name, function=_queue_of(config["FunctionArn"]), header=identity.get("Header", "Authorization"),
                validation=identity.get("ValidationExpression"), ttl_s=int(identity.get("ReauthorizeEvery", 300)))
    return AppSpec(
        queues={k: v for k, v in resources.items() if v.get("Type") == "AWS::SQS::Queue"},
        tables={k: v for k, v in resources.items() if v.get("Type") == "AWS::DynamoDB::Table"},
        functions=functions,
        parameters=template.get("Parameters", {}),
        secrets={k: v for k, v in resources.items() if v.get("Type") == "AWS::SecretsManager::Secret"},
        authorizers=authorizers,
        default_authorizer=default_authorizer,
    )
