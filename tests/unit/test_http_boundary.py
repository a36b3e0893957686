"""The HTTP boundary (incident_loop.http): bad input is decided before any route runs, in one error shape.

Handlers are called through the resolver with API Gateway proxy events; the domain is replaced where
a test needs it to fail, so nothing here needs a database.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from incident_loop.api import ROUTERS, assemble
from incident_loop.db import DatabaseUnavailable
from incident_loop.http.boundary import _STRING, MAX_DEPTH, check_depth, parse_json, text_errors
from incident_loop.http.errors import RETRY_AFTER_S, BadRequest
from incident_loop.loop.wiring import stage_queues
from incident_loop.routes import ingest as ingest_routes
from incident_loop.routes import loop as loop_routes
from incident_loop.routes import workflows as workflow_routes
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.settings import Settings
from incident_loop.stores.queues import QueueUnavailable
from incident_loop_dev.local.runner import FakeContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
# Every API function's routes on one resolver: the boundary is the same for each.
APP = assemble(*ROUTERS)


def event(method: str = "POST", path: str = "/incidents", body: str | bytes | None = None, *,
          content_type: str | None = "application/json", query: dict[str, str] | None = None,
          base64_body: bool = False, authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    base = json.loads((EVENTS / "ingest_api_timeout_1.json").read_text())
    if isinstance(body, bytes) or base64_body:
        raw = body if isinstance(body, bytes) else (body or "").encode()
        body, encoded = base64.b64encode(raw).decode(), True
    else:
        encoded = False
    base.update(httpMethod=method, path=path, resource=path, body=body, isBase64Encoded=encoded,
                headers={"Content-Type": content_type} if content_type else {},
                queryStringParameters=query, multiValueQueryStringParameters={k: [v] for k, v in (query or {}).items()}
                or None)
    base["requestContext"].update(httpMethod=method, path=path, resourcePath=path)
    if authorizer is not None:
        base["requestContext"]["authorizer"] = authorizer
    return dict(base)


def call(evt: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = APP.resolve(evt, FakeContext(function_name="test"))
    headers = {**(response.get("headers") or {}),
               **{k: ",".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}}
    return response["statusCode"], headers, json.loads(response["body"]) if response.get("body") else None


def good_incident(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.loads((EVENTS / "ingest_api_timeout_1.json").read_text())["body"])
    return {**body, **changes}


def assert_shape(body: Any) -> None:
    assert isinstance(body, dict) and set(body) <= {"message", "errors"} and body["message"], body
    for error in body.get("errors", []):
        assert set(error) == {"field", "reason"}, error


@pytest.fixture
def no_domain(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The routes' domain calls, recorded and never run: a boundary rejection must not reach them."""
    reached: list[Any] = []
    monkeypatch.setattr(ingest_routes, "ingest_incident", lambda *a, **k: reached.append(a))
    monkeypatch.setattr(loop_routes, "report_kpi", lambda *a, **k: reached.append(a) or {})
    return reached


# ------------------------------------------------------------------------- parsing, without recursion


def test_depth_is_bounded_before_parsing_and_brackets_in_strings_do_not_count() -> None:
    check_depth("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    check_depth(json.dumps({"s": "[" * 10_000}))
    with pytest.raises(BadRequest, match="deeper than 64"):
        check_depth("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(BadRequest):
        parse_json("[" * 100_000)  # would be RecursionError in json.loads


def test_an_unterminated_string_is_skipped_in_one_pass_and_the_body_refused() -> None:
    """A string never closed, full of escaped quotes, is one match to the end of the body: the depth
    check is not tried again from each later quote (quadratic: 128 kB took 50 s, past the function's
    timeout, and the caller got a 5xx). 4 MB of it is a plain 400."""
    text = '{"agent_id": "' + '\\"' * 2_000_000
    assert [m.span() for m in _STRING.finditer(text)] == [(1, 11), (13, len(text))]  # the key, then the rest
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json(text)
    assert _STRING.sub('""', '{"a": "x\\"[", "b": ["]"]}') == '{"": "", "": [""]}'  # closed strings as before


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x": 1e999}',
                                  '{"x": ' + "9" * 5000 + "}", '{"x": ', "{'x': 1}"])
def test_json_that_jsonb_cannot_store_or_that_is_not_json_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_json(text)


def test_nul_and_lone_surrogates_are_found_at_any_depth_in_keys_and_values() -> None:
    value = {"ok": "fine", "a": {"b": ["x", "y\x00"]}, "k\x00": 1, "s": "\ud800"}
    found = {".".join(map(str, e["loc"])): e["msg"] for e in text_errors(value, ("body",))}
    assert set(found) == {"body.a.b.1", "body", "body.s"}
    assert "NUL" in found["body.a.b.1"] and "surrogate" in found["body.s"]
    deep: Any = "\x00"
    for _ in range(10_000):
        deep = [deep]
    assert len(text_errors(deep, ("body",))) == 1  # an explicit stack: no RecursionError


# ------------------------------------------------------------------------- the resolver


def test_nul_in_a_nested_body_value_is_a_422_naming_the_field(no_domain: list[Any]) -> None:
    status, _, body = call(event(body=json.dumps(good_incident(context={"a": {"b": "x\x00"}}))))
    assert status == 422 and no_domain == []
    assert_shape(body)
    assert body["errors"] == [{"field": "body.context.a.b", "reason": "must not contain NUL (\\u0000) characters"}]


@pytest.mark.parametrize("spelled", ["01", "+1", "1_0", "1.0", "-0", "%201"])
def test_an_op_index_spelled_other_than_its_digits_is_a_422(spelled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic's lax int read /ops/01, /ops/+1 and /ops/1.0 as op 1, and /ops/1_0 as op 10."""
    reached: list[Any] = []
    monkeypatch.setattr(workflow_routes, "op_view", lambda tenant, run, index: reached.append(index))
    status, _, body = call(event("GET", f"/workflows/wf_1/ops/{spelled}", None))
    assert (status, reached) == (422, []), f"{spelled!r} was read as op {reached}"
    assert_shape(body)
    assert body["errors"][0]["field"].endswith("op_index")


def test_an_op_index_as_the_run_names_it_reaches_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    reached: list[Any] = []
    monkeypatch.setattr(workflow_routes, "op_view", lambda tenant, run, index: reached.append(index) or {})
    call(event("GET", "/workflows/wf_1/ops/10", None))
    call(event("GET", "/workflows/wf_1/ops/7/", None))  # a trailing slash is routed here, as elsewhere
    assert reached == [10, 7]


def test_nul_in_a_query_value_is_a_422_before_the_route_runs() -> None:
    status, _, body = call(event("GET", "/failures", query={"run_id": "a\x00"}))
    assert status == 422 and body["errors"][0]["field"] == "query.run_id"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x", "text/plain",
                                          "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_route_takes_json_only(no_domain: list[Any], content_type: str) -> None:
    status, _, body = call(event(body=json.dumps(good_incident()), content_type=content_type))
    assert status == 415 and no_domain == []
    assert_shape(body)
    assert body["errors"][0]["field"] == "header.content-type"


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_content_types_and_none_are_taken(no_domain: list[Any], content_type: str | None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_loop.schemas.incident import IncidentAccepted

    monkeypatch.setattr(ingest_routes, "ingest_incident", lambda *a, **k: IncidentAccepted(
        incident_id="inc_1", loop_id="loop_1", duplicate=False, status_url="/loops/inc_1"))
    assert call(event(body=json.dumps(good_incident()), content_type=content_type))[0] == 202


@pytest.mark.parametrize("body, flagged", [("not base64!", False), (b'{"agent_id": "\xff"}', True)],
                         ids=["invalid-base64", "not-utf8"])
def test_a_base64_body_that_does_not_decode_to_utf8_is_a_400(no_domain: list[Any], body: Any, flagged: bool) -> None:
    evt = event(body=body) if flagged else {**event(body=None), "body": body, "isBase64Encoded": True}
    status, _, answer = call(evt)
    assert status == 400 and no_domain == []
    assert_shape(answer)


def test_a_valid_base64_json_body_is_read() -> None:
    status, _, body = call(event("POST", "/routing/agent-1/kpi", '{"kpi": "x"}', base64_body=True))
    assert status == 422 and body["errors"][0]["field"] == "body.kpi"  # decoded and validated, not a 400


@pytest.mark.parametrize("payload", [{"kpi": False}, {"kpi": "0.5"}, {"kpi": None}])
def test_kpi_is_a_json_number(no_domain: list[Any], payload: dict[str, Any]) -> None:
    assert call(event("POST", "/routing/agent-1/kpi", json.dumps(payload)))[0] == 422


def test_skill_id_is_bounded_by_the_failure_records_column(no_domain: list[Any]) -> None:
    status, _, body = call(event(body=json.dumps(good_incident(skill_id="s" * 101))))
    assert status == 422 and body["errors"][0]["field"] == "body.skill_id" and no_domain == []


@pytest.mark.parametrize("error", [DatabaseUnavailable("down"), QueueUnavailable("gone")])
def test_an_unavailable_dependency_is_a_503_with_retry_after(monkeypatch: pytest.MonkeyPatch,
                                                            error: Exception) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(ingest_routes, "ingest_incident", fail)
    status, headers, body = call(event(body=json.dumps(good_incident())))
    assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_S)
    assert_shape(body)


def test_a_503_a_route_returns_itself_carries_retry_after_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_loop.costsim import service

    monkeypatch.setattr(service, "health", lambda: ({"status": "unavailable"}, 503))
    status, headers, body = call(event("GET", "/health", authorizer={}))
    assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_S) and body == {"status": "unavailable"}


def test_an_unexpected_error_is_a_500_in_the_error_shape_not_a_502(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(ingest_routes, "ingest_incident", fail)
    status, _, body = call(event(body=json.dumps(good_incident())))
    assert status == 500 and body == {"message": "internal error"}


def test_powertools_http_errors_keep_their_status_in_the_error_shape() -> None:
    status, _, body = call(event("GET", "/graduation", authorizer={}))
    assert status == 401 and body == {"message": "the caller's identity carries no tenant_id"}


# ------------------------------------------------------------------------- the queue store


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessage"),
    EndpointConnectionError(endpoint_url="http://sqs.invalid"),
], ids=["queue-does-not-exist", "unreachable"])
def test_sqs_refusing_or_unreachable_is_queue_unavailable(error: Exception) -> None:
    class Client:
        def send_message(self, **kwargs: Any) -> None:
            raise error

    queues = stage_queues(Settings(pattern_queue_url="https://sqs.invalid/1/q"), client=Client())
    envelope = Envelope(incident_id="inc_1", tenant_id="t", loop_id="loop_1", stage=LoopStage.PATTERN_MATCHED,
                        correlation_id="inc_1")
    with pytest.raises(QueueUnavailable) as raised:
        queues.send(envelope)
    assert raised.value.__cause__ is error
