"""What a request must be before any route sees it, decided once for every route.

* A body route takes JSON only (`application/json` or `+json`; none given counts as JSON): else 415.
* The body is text: a base64-flagged body must decode, and be UTF-8: else 400.
* JSON nests at most MAX_DEPTH levels, checked by a scan (no recursion) before parsing: else 400.
* JSON is RFC 8259's: no NaN/Infinity, no number that overflows a double, no integer past Python's
  digit limit (JSONB could not store them; Python's parser accepts the first two): else 400.
* No string anywhere (body keys and values at any depth, query and path values) holds a NUL or a lone
  surrogate, which PostgreSQL text cannot store: else 422 naming the field.

Then the models validate as before (422). The middleware is Powertools' request validation with its
body reading replaced, so the order stays: boundary, models, route.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from incident_loop.http.errors import BadRequest, UnsupportedMediaType
from incident_loop.schemas.text import text_errors

MAX_DEPTH = 64
# A string, or an unterminated one up to the end of the body: taken in one possessive pass, never
# tried again from a later quote (which made a malformed body's check quadratic in its length).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def require_json(content_type: str | None) -> None:
    """UnsupportedMediaType unless the request's body is declared JSON (or not declared at all)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(media)


def body_text(body: str | None, is_base64: bool | None) -> str | None:
    """The body as text: decoded when API Gateway base64-encoded it."""
    if not body or not is_base64:
        return body
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("the body is flagged base64 but is not valid base64", str(exc)) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8 text", f"invalid UTF-8 at byte {exc.start}") from exc


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """BadRequest when arrays and objects nest deeper than `limit` (strings are skipped; no recursion)."""
    level = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            level += 1
            if level > limit:
                raise BadRequest(f"the JSON body nests deeper than {limit} levels", f"deeper than {limit} levels")
        else:
            level -= 1


def _constant(name: str) -> Any:
    raise BadRequest("the body is not valid JSON", f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest("the body is not valid JSON", f"{text[:40]} is not a finite number")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise BadRequest("the body is not valid JSON", f"an integer of {len(text)} digits is too long") from exc


def parse_json(text: str | None) -> Any:
    """The body as JSON (None when empty), within the bounds above."""
    if not text:
        return None
    check_depth(text)
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc


class BoundaryValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, preceded by the boundary's checks on every value and the body."""

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Any:
        event = app.current_event
        errors = text_errors(event.get("multiValueQueryStringParameters") or {}, ("query",))
        errors += text_errors(event.get("queryStringParameters") or {}, ("query",))
        errors += text_errors(app.context.get("_route_args") or {}, ("path",))
        if errors:
            unique = {tuple(map(str, e["loc"][:2])): e for e in errors}  # a multi-value param is named once
            raise RequestValidationError([{**e, "loc": e["loc"][:2]} for e in unique.values()])
        return super().handler(app, next_middleware)

    def _get_body(self, app: Any) -> Any:
        event = app.current_event
        require_json(event.headers.get("content-type"))
        value = parse_json(body_text(event.body, event.is_base64_encoded))
        errors = text_errors(value, ("body",))
        if errors:
            raise RequestValidationError(errors)
        return value
