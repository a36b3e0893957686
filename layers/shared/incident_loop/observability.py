"""One Logger, Metrics and Tracer for the whole package (Powertools).

Tracing is on when both hold, and only then is `tracer` a Powertools `Tracer` (which imports the
X-Ray SDK and patches botocore, so every AWS call is a subsegment):

* the code runs in Lambda: `LAMBDA_TASK_ROOT` is set and `AWS_SAM_LOCAL` is not;
* `POWERTOOLS_TRACE_DISABLED` is not true ("1", "true", "yes", "on", ...).

That is Powertools' own rule for disabling its Tracer. Lambda gives no init-time sign of whether
active tracing is on (it sets `AWS_XRAY_DAEMON_ADDRESS` either way), so in the cloud the
template's `Tracing: Active` decides where traces go and `POWERTOOLS_TRACE_DISABLED` turns them off.
Otherwise (tests, local runs, tracing disabled) `tracer` is a `NoTracer` with the same decorators,
which imports nothing: a disabled Powertools Tracer would still import the X-Ray SDK at cold start.
Either is built when a module first imports `tracer`, so a function that never does (migrate, the
authorizer) loads no X-Ray SDK even with tracing on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "incident-loop"
_TRUTHY = ("1", "y", "yes", "t", "true", "on")


def tracing_enabled() -> bool:
    """Whether this process traces (the rule of the module docstring); asked once, when `tracer` is built."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUTHY:
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")


class NoTracer:
    """The Tracer API this package uses, doing nothing: decorators return the function unchanged."""

    disabled = True

    def __init__(self, service: str | None = None) -> None:
        self.service = service

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None,
                               capture_response: bool | None = None,
                               capture_error: bool | None = None) -> Callable[..., Any]:
        return lambda_handler if lambda_handler is not None else _identity

    def capture_method(self, method: Callable[..., Any] | None = None, capture_response: bool | None = None,
                       capture_error: bool | None = None) -> Callable[..., Any]:
        return method if method is not None else _identity

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None


def _identity(function: Callable[..., Any]) -> Callable[..., Any]:
    return function


logger = Logger(service=SERVICE)
metrics = Metrics(namespace="IncidentLoop", service=SERVICE)
tracer: Tracer | NoTracer  # built by __getattr__ when first imported: a function that never does never builds it


def __getattr__(name: str) -> Any:
    if name != "tracer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if tracing_enabled():
        from aws_lambda_powertools import Tracer

        # boto3 is what there is to patch: X-Ray's psycopg patch needs psycopg_pool (not shipped), and
        # patch_all would only add sqlite3 (unused) at the price of importing every patcher it knows.
        built: Tracer | NoTracer = Tracer(service=SERVICE, patch_modules=("botocore",))
    else:
        built = NoTracer(service=SERVICE)
    globals()["tracer"] = built
    return built
