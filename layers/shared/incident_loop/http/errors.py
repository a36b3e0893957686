"""The API's one error body, the boundary's own errors, and how long a client waits before a retry."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel, Field

RETRY_AFTER_S = 5  # what a 503 asks a client to wait: a dependency back within seconds is the common case


class FieldError(BaseModel):
    field: str = Field(description="Where: 'body.<path>', 'query.<name>', 'path.<name>' or 'header.<name>'")
    reason: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx of the API has this body."""

    message: str
    errors: list[FieldError] = Field(default_factory=list, description="Per field, when the request is at fault "
                                                                       "(absent otherwise)")


class BadRequest(Exception):
    """The body is not JSON the API can read (malformed, non-finite numbers, too deep, not base64 or UTF-8): 400."""

    def __init__(self, message: str, reason: str | None = None, field: str = "body"):
        super().__init__(message)
        self.message = message
        self.errors = [{"field": field, "reason": reason}] if reason else None


class UnsupportedMediaType(Exception):
    """A JSON route was sent another content type: 415."""

    def __init__(self, content_type: str, accepted: str = "application/json"):
        super().__init__(f"unsupported content type {content_type!r}: this route takes {accepted}")
        self.message = str(self)
        self.errors = [{"field": "header.content-type", "reason": f"must be {accepted}, not {content_type!r}"}]


def error_response(status: int, message: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    """The one error body, {"message", "errors"?}; every 503 carries Retry-After."""
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)
