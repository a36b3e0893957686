"""The API's resolver: Powertools' REST resolver with the boundary's validation and a declared error contract.

Every route's OpenAPI responses get, besides what the route declares itself (its success, and the
404/409/403 only it knows about):

* 401 (unless the route is public: `openapi_extensions={PUBLIC: ...}`), 422 and 503 for every route;
* 400 and 415 for every route that takes a JSON body;
* the one error body (ErrorBody) for every error response, declared or added.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import BaseModel

from incident_loop.http.boundary import MAX_DEPTH, BoundaryValidation
from incident_loop.http.errors import RETRY_AFTER_S, ErrorBody

# API Gateway's own OpenAPI extension for a method without an authorizer.
PUBLIC = {"x-amazon-apigateway-auth": {"type": "NONE"}}

COMMON = {
    401: "No valid bearer token (API Gateway's authorizer answers before the function)",
    422: "A parameter or the body failed validation (including text PostgreSQL cannot store: NUL, lone surrogates)",
    503: f"A dependency (database, queue) is unavailable or stalled; retry after the Retry-After seconds "
         f"(usually {RETRY_AFTER_S})",
}
BODY = {
    400: f"The body is not readable JSON: malformed, NaN/Infinity, nested deeper than {MAX_DEPTH}, "
         "or a base64 body that is not base64 or not UTF-8",
    415: "The body is not application/json",
}
_ERROR_CONTENT = {"application/json": {"model": ErrorBody}}
_ROUTE = inspect.signature(APIGatewayRestResolver.route)


def takes_body(func: Callable[..., Any]) -> bool:
    """Whether a route function takes a request body (a pydantic model parameter)."""
    hints = typing.get_type_hints(func)
    return any(isinstance(t, type) and issubclass(t, BaseModel) for name, t in hints.items() if name != "return")


def contract(func: Callable[..., Any], methods: list[str], responses: dict[int, Any] | None, status_code: int,
             description: str, public: bool) -> dict[int, Any]:
    """The OpenAPI responses of a route: its own, the common errors, and the one error body on each error."""
    declared = {int(code): dict(spec) for code, spec in (responses or {}).items()}
    out: dict[int, Any] = {} if any(code < 400 for code in declared) else {status_code: {"description": description}}
    common = {code: text for code, text in COMMON.items() if not (public and code == 401)}
    if {m.upper() for m in methods} & {"POST", "PUT", "PATCH"} and takes_body(func):
        common.update(BODY)
    for code, text in sorted(common.items()):
        out[code] = {"description": text}
    out.update(declared)
    for code, spec in out.items():
        if code >= 400:
            spec.setdefault("content", _ERROR_CONTENT)
    if 503 in out:
        out[503].setdefault("headers", {"Retry-After": {"description": "Seconds to wait before retrying",
                                                        "schema": {"type": "integer"}}})
    return dict(sorted(out.items()))


def retry_after(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """A 503 a route returns itself (e.g. /health) carries Retry-After too, like those errors map to."""
    response: Response[Any] = next_middleware(app)
    if response.status_code == 503 and not any(k.lower() == "retry-after" for k in response.headers):
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


class BoundaryResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver (validation on) whose request validation is the boundary's (http.boundary)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(enable_validation=True, **kwargs)
        self._request_validation_middleware = BoundaryValidation()
        self.use([retry_after])

    def route(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[override]
        bound = _ROUTE.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop("self")

        def register(func: Callable[..., Any]) -> Any:
            public = bool(arguments["openapi_extensions"]) and all(
                arguments["openapi_extensions"].get(k) == v for k, v in PUBLIC.items())
            method = arguments["method"]
            methods = [method] if isinstance(method, str) else list(method)
            arguments["responses"] = contract(func, methods, arguments["responses"],
                                              arguments["status_code"], arguments["response_description"], public)
            return super(BoundaryResolver, self).route(**arguments)(func)

        return register
