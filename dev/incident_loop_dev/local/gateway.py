"""API Gateway (REST, Lambda proxy) on 127.0.0.1: the template's routes, through its authorizer.

What API Gateway itself answers is answered here the same way: no route -> 403 "Missing
Authentication Token"; no or malformed token -> 401 without calling the authorizer; the
authorizer raising "Unauthorized" -> 401; an explicit Deny -> 403; a function error -> 502.
Authorizer answers are cached per token for the template's ReauthorizeEvery.

`/_local/...` is this emulator's own: queue depths, and running a scheduled function on demand.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from incident_loop_dev.local.artifact import InvocationError
from incident_loop_dev.local.cloud import LocalCloud, scheduled_event
from incident_loop_dev.local.template import ApiRoute, Authorizer, FunctionSpec

STAGE = "local"
ACCOUNT = "123456789012"


class GatewayError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Gateway:
    """Routing, authorization and the proxy event, independent of the HTTP server."""

    def __init__(self, cloud: LocalCloud):
        self.cloud = cloud
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def route(self, method: str, path: str) -> tuple[FunctionSpec, ApiRoute, dict[str, str]]:
        for fn in self.cloud.app.spec.functions.values():
            for route in fn.routes:
                params = route.match(method, path)
                if params is not None:
                    return fn, route, params
        raise GatewayError(403, "Missing Authentication Token")

    def authorize(self, authorizer: Authorizer, headers: dict[str, str], method: str, path: str) -> dict[str, Any]:
        """The authorizer's context for this request, or GatewayError(401/403/500)."""
        token = next((v for k, v in headers.items() if k.lower() == authorizer.header.lower()), None)
        if not token or (authorizer.validation and not re.fullmatch(authorizer.validation, token)):
            raise GatewayError(401, "Unauthorized")
        method_arn = f"arn:aws:execute-api:us-east-1:{ACCOUNT}:local/{STAGE}/{method.upper()}{path}"
        key = (authorizer.name, token)
        with self._lock:
            cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            answer = cached[1]
        else:
            try:
                answer = self.cloud.invoke(authorizer.function, {"type": "TOKEN", "authorizationToken": token,
                                                                 "methodArn": method_arn})
            except InvocationError as exc:
                if exc.payload.get("errorMessage") == "Unauthorized":
                    raise GatewayError(401, "Unauthorized") from exc
                raise GatewayError(500, "AuthorizerConfigurationException") from exc
            with self._lock:
                self._cache[key] = (time.monotonic() + authorizer.ttl_s, answer)
        if not _allows(answer.get("policyDocument") or {}, method_arn):
            raise GatewayError(403, "User is not authorized to access this resource with an explicit deny")
        return {"principalId": answer.get("principalId"), **(answer.get("context") or {}), "integrationLatency": 0}

    def proxy_event(self, method: str, path: str, route: ApiRoute, params: dict[str, str],
                    headers: list[tuple[str, str]], query: str, body: bytes | None,
                    authorizer: dict[str, Any] | None) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        parsed = parse_qs(query, keep_blank_values=True)
        text: str | None = None
        encoded = False
        if body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
        context: dict[str, Any] = {
            "resourcePath": route.path, "httpMethod": method, "path": f"/{STAGE}{path}", "stage": STAGE,
            "requestId": str(uuid.uuid4()), "accountId": ACCOUNT, "apiId": "local",
            "identity": {"sourceIp": "127.0.0.1"}, "requestTimeEpoch": int(time.time() * 1000),
        }
        if authorizer is not None:
            context["authorizer"] = authorizer
        return {
            "resource": route.path, "path": path, "httpMethod": method, "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in parsed.items()} or None,
            "multiValueQueryStringParameters": parsed or None, "pathParameters": params or None,
            "stageVariables": None, "requestContext": context, "body": text, "isBase64Encoded": encoded,
        }

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]],
               body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        """One request through the gateway: (status, headers, body)."""
        parts = urlsplit(raw_path)
        try:
            fn, route, params = self.route(method, parts.path)
            authorizer = self.cloud.app.spec.authorizer_for(route)
            context = None
            if authorizer is not None:
                context = self.authorize(authorizer, dict(headers), method, parts.path)
            event = self.proxy_event(method, parts.path, route, params, headers, parts.query, body, context)
            try:
                response = self.cloud.invoke(fn.logical_id, event)
            except InvocationError:
                raise GatewayError(502, "Internal server error") from None
            if not isinstance(response, dict) or "statusCode" not in response:
                raise GatewayError(502, "Internal server error")
        except GatewayError as exc:
            return exc.status, {"Content-Type": "application/json"}, json.dumps({"message": exc.message}).encode()
        out_headers = {k: str(v) for k, v in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name] = ",".join(str(v) for v in values)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode()
        return int(response["statusCode"]), out_headers, data


def _allows(policy: dict[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer policy: an explicit Deny wins, else some Allow must match."""
    allowed = False
    for statement in policy.get("Statement") or []:
        resources = statement.get("Resource")
        resources = resources if isinstance(resources, list) else [resources]
        if not any(fnmatch.fnmatchcase(method_arn, str(r)) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


class _Handler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the second waits ~40 ms for the client's
    # delayed ACK on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.cloud.logs.write("gateway: " + format % args + "\n")

    def _local(self, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
        app = self.server.cloud.app
        if method == "GET" and path == "/_local/queues":
            depths = {q: app.depth(q) for q in app.spec.queues}
            return 200, {"queues": depths, "errors": self.server.pollers.errors if self.server.pollers else []}
        match = re.fullmatch(r"/_local/functions/(\w+)/invoke", path)
        if method == "POST" and match:
            logical_id = match.group(1)
            fn = app.spec.functions.get(logical_id)
            if fn is None:
                return 404, {"message": f"no function {logical_id}"}
            event = json.loads(body) if body else scheduled_event(logical_id)
            try:
                return 200, {"response": self.server.cloud.invoke(logical_id, event)}
            except InvocationError as exc:
                return 502, exc.payload
        return 404, {"message": f"no local route {method} {path}"}

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        method = self.command.upper()
        path = urlsplit(self.path).path
        if path.startswith("/_local/"):
            status, payload = self._local(method, path, body)
            headers, data = {"Content-Type": "application/json"}, json.dumps(payload, default=str).encode()
        else:
            status, headers, data = self.server.gateway.handle(method, self.path, list(self.headers.items()), body)
        self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _serve


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], cloud: LocalCloud, pollers: Any = None):
        super().__init__(address, _Handler)
        self.cloud = cloud
        self.gateway = Gateway(cloud)
        self.pollers = pollers
