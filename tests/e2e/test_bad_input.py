"""Hand-made bad requests over `incident-loop local start-api`: each a 4xx with the one error shape, nothing stored.

One row per request, grouped by the class of bad input the fuzz and fault probe of issue 10 found
(NUL characters, non-finite numbers, offsets past any page, fields longer than their column, non-JSON
content types, deep nesting, broken base64 bodies) and by the contract's strict types. Every row is
checked the same way: the status, the error body {"message", "errors"?: [{"field", "reason"}]}, and
every table of the database unchanged (rows and contents, read as the admin).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from local_http import Answer, LocalApi

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
pytestmark = pytest.mark.e2e

TENANT = "tenant-bad-input"
INCIDENT = dict(json.loads(json.loads((EVENTS / "ingest_api_timeout_1.json").read_text())["body"]))
STEP = {"skill": "web_search", "model": "small", "tokens_in": 1200, "tokens_out": 300}
BIG = 2**63  # one past the largest bigint


def incident(**changes: Any) -> dict[str, Any]:
    return {**INCIDENT, "run_id": "run-bad-input", **changes}


def nested(depth: int) -> str:
    """An incident whose JSON nests `depth` levels deep in all (the body itself is level 1)."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return json.dumps(incident())[:-1] + f', "incident_key": "deep-{depth}", "context": {{"deep": {inner}}}}}'


@dataclass
class Bad:
    """A bad request: method, path ({failure_id}, {checkpoint_id}, {policy_id} filled in), body, status."""

    name: str
    method: str
    path: str
    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str | None = "application/json"
    reason: str = ""  # a fragment the message or a reason must contain
    fields: list[str] = field(default_factory=list)  # error fields that must be named


NUL = "a\u0000b"
CASES = [
    # 1. NUL characters: PostgreSQL text cannot hold them (they were psycopg DataError -> 502).
    Bad("nul-incident-message", "POST", "/incidents", 422, incident(error_message=NUL),
        fields=["body.error_message"], reason="NUL"),
    Bad("nul-incident-context-value", "POST", "/incidents", 422, incident(context={"a": {"b": ["ok", NUL]}}),
        fields=["body.context.a.b.1"], reason="NUL"),
    Bad("nul-incident-context-key", "POST", "/incidents", 422, incident(context={NUL: 1}), reason="NUL"),
    Bad("nul-failures-run-id", "GET", "/failures?run_id=a%00b", 422, fields=["query.run_id"], reason="NUL"),
    Bad("nul-failures-error-code", "GET", "/failures?error_code=%00", 422, fields=["query.error_code"]),
    Bad("nul-failures-category", "GET", "/failures?category=x%00", 422, fields=["query.category"]),
    Bad("nul-unrecovered-category", "GET", "/failures/unrecovered?category=%00", 422, fields=["query.category"]),
    Bad("nul-recovery-notes", "PATCH", "/failures/{failure_id}/recovery", 422,
        {"succeeded": True, "by": "oncall", "notes": NUL}, fields=["body.notes"]),
    Bad("nul-recovery-by", "PATCH", "/failures/{failure_id}/recovery", 422, {"succeeded": True, "by": NUL},
        fields=["body.by"]),
    Bad("nul-recovery-v1-notes", "PATCH", "/api/v1/failures/{failure_id}/recovery", 422,
        {"recovery_succeeded": True, "notes": NUL}, fields=["body.notes"]),
    Bad("nul-simulate-skill", "POST", "/costsim/simulate", 422, {"plan": {"steps": [{**STEP, "skill": NUL}]}},
        fields=["body.plan.steps.0.skill"]),
    Bad("nul-checkpoint-resolved-by", "POST", "/checkpoints/{checkpoint_id}/resolve", 422,
        {"resolution": "approve", "resolved_by": NUL}, fields=["body.resolved_by"]),
    Bad("nul-checkpoint-modifications", "POST", "/checkpoints/{checkpoint_id}/resolve", 422,
        {"resolution": "modify", "resolved_by": "oncall", "modifications": {"retry": {"backoff": NUL}}},
        fields=["body.modifications.retry.backoff"]),
    Bad("nul-policy-confirm-by", "POST", "/policies/{policy_id}/confirm", 422, {"by": NUL}, fields=["body.by"]),
    Bad("modify-without-modifications", "POST", "/checkpoints/{checkpoint_id}/resolve", 422,
        {"resolution": "modify", "resolved_by": "oncall"}, reason="needs modifications", fields=["body"]),
    Bad("approve-with-modifications", "POST", "/checkpoints/{checkpoint_id}/resolve", 422,
        {"resolution": "approve", "resolved_by": "oncall", "modifications": {"max_retries": 5}},
        reason="apply to 'modify' only", fields=["body"]),
    Bad("agent-id-longer-than-an-agent", "POST", "/routing/" + "a" * 2700 + "/kpi", 422, {"kpi": 0.5},
        fields=["path.agent_id"]),
    Bad("lone-surrogate-context", "POST", "/incidents", 422,
        raw=json.dumps(incident(context={"x": "y"})).replace('"y"', '"\\ud800"').encode(), reason="surrogate",
        fields=["body.context.x"]),
    # 2. Non-finite numbers: Python's JSON reads them, JSONB does not (and RFC 8259 has no such literal).
    Bad("nan-incident-context", "POST", "/incidents", 400, raw=json.dumps(incident(context={"x": float("nan")}))
        .encode(), reason="NaN"),
    Bad("infinity-incident-context", "POST", "/incidents", 400,
        raw=json.dumps(incident(context={"x": float("inf")})).encode(), reason="Infinity"),
    Bad("minus-infinity-incident-context", "POST", "/incidents", 400,
        raw=json.dumps(incident(context={"x": float("-inf")})).encode(), reason="Infinity"),
    Bad("overflowing-number", "POST", "/incidents", 400,
        raw=json.dumps(incident(context={"x": 1})).replace(": 1}", ": 1e999}").encode(), reason="finite"),
    Bad("nan-kpi", "POST", "/routing/agent-1/kpi", 400, raw=b'{"kpi": NaN}', reason="NaN"),
    Bad("malformed-json", "POST", "/incidents", 400, raw=b'{"agent_id": ', reason="JSON"),
    # 3. Offsets past any page (2^63 overflowed bigint in PostgreSQL).
    Bad("offset-2-63-failures", "GET", f"/failures?offset={BIG}", 422, fields=["query.offset"]),
    Bad("offset-2-63-unrecovered", "GET", f"/failures/unrecovered?offset={BIG}", 422, fields=["query.offset"]),
    Bad("offset-past-bound", "GET", "/failures?offset=1000001", 422, fields=["query.offset"]),
    # 4. Longer than the column the failure record keeps (was committed half-way, then 502).
    Bad("skill-id-101", "POST", "/incidents", 422, incident(skill_id="s" * 101), fields=["body.skill_id"]),
    Bad("skill-id-128", "POST", "/incidents", 422, incident(skill_id="s" * 128), fields=["body.skill_id"]),
    # 5. Content types a JSON route does not take (multipart without a boundary was ValueError -> 502).
    Bad("multipart-without-boundary", "POST", "/incidents", 415, incident(), content_type="multipart/form-data",
        reason="multipart/form-data"),
    Bad("multipart-with-boundary", "POST", "/incidents", 415,
        raw=b'--b\r\nContent-Disposition: form-data; name="agent_id"\r\n\r\na\r\n--b--\r\n',
        content_type="multipart/form-data; boundary=b"),
    Bad("form-urlencoded", "POST", "/incidents", 415, raw=b"agent_id=a&run_id=r",
        content_type="application/x-www-form-urlencoded"),
    Bad("text-plain", "POST", "/costsim/simulate", 415, {"plan": {"steps": [STEP]}}, content_type="text/plain"),
    Bad("multipart-recovery", "PATCH", "/failures/{failure_id}/recovery", 415, {"succeeded": True, "by": "x"},
        content_type="multipart/form-data"),
    # 6. Deep nesting (5000 levels was RecursionError -> 502); bounded at 64 before parsing.
    Bad("nested-5000", "POST", "/incidents", 400, raw=nested(5000).encode(), reason="64"),
    Bad("nested-65", "POST", "/incidents", 400, raw=nested(65).encode(), reason="64"),
    # 7. A body the gateway had to base64-encode, that is not UTF-8 once decoded.
    Bad("not-utf8", "POST", "/incidents", 400, raw=b'{"agent_id": "\xff\xfe"}', reason="UTF-8"),
    # Strict types: a wrong type is a client bug, not something to coerce.
    Bad("kpi-false", "POST", "/routing/agent-1/kpi", 422, {"kpi": False}, fields=["body.kpi"]),
    Bad("kpi-string", "POST", "/routing/agent-1/kpi", 422, {"kpi": "0.5"}, fields=["body.kpi"]),
    Bad("succeeded-yes", "PATCH", "/failures/{failure_id}/recovery", 422, {"succeeded": "yes", "by": "x"},
        fields=["body.succeeded"]),
    Bad("recovery-succeeded-v1-string", "PATCH", "/api/v1/failures/{failure_id}/recovery", 422,
        {"recovery_succeeded": "true"}, fields=["body.recovery_succeeded"]),
    Bad("tokens-in-string", "POST", "/costsim/simulate", 422, {"plan": {"steps": [{**STEP, "tokens_in": "1200"}]}},
        fields=["body.plan.steps.0.tokens_in"]),
    Bad("tokens-out-float", "POST", "/costsim/simulate", 422, {"plan": {"steps": [{**STEP, "tokens_out": 300.0}]}},
        fields=["body.plan.steps.0.tokens_out"]),
]


@pytest.fixture(scope="module")
def world(local_api: LocalApi) -> dict[str, Any]:
    """One incident of the tenant, its loop waiting at the recovery checkpoint, its failure recorded."""
    token = local_api.token(TENANT)
    answer = local_api.send("POST", "/incidents", token, json_body=INCIDENT)
    assert answer.status == 202, answer
    local_api.drained()
    checkpoints = local_api.send("GET", "/checkpoints", token).body["checkpoints"]
    failures = local_api.send("GET", "/failures", token).body["failures"]
    assert len(checkpoints) == 1 and len(failures) == 1, (checkpoints, failures)
    return {"token": token, "checkpoint_id": checkpoints[0]["checkpoint_id"], "failure_id": failures[0]["id"],
            "policy_id": "pol_does_not_matter"}


def assert_error_shape(answer: Answer) -> None:
    body = answer.body
    assert isinstance(body, dict) and set(body) <= {"message", "errors"}, body
    assert isinstance(body["message"], str) and body["message"], body
    for error in body.get("errors", []):
        assert set(error) == {"field", "reason"} and all(isinstance(v, str) for v in error.values()), error


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_a_4xx_with_the_error_shape_and_stores_nothing(local_api: LocalApi, world: dict[str, Any],
                                                                     case: Bad) -> None:
    before = local_api.snapshot()
    answer = local_api.send(case.method, case.path.format(**world), world["token"], json_body=case.body,
                            raw=case.raw, content_type=case.content_type)

    assert answer.status == case.status, (answer.status, answer.body)
    assert_error_shape(answer)
    named = {e["field"] for e in answer.body.get("errors", [])}
    assert set(case.fields) <= named, (case.fields, answer.body)
    assert case.reason in json.dumps(answer.body, ensure_ascii=False), answer.body
    assert local_api.snapshot() == before


def test_the_same_requests_made_good_are_accepted(local_api: LocalApi, world: dict[str, Any]) -> None:
    """The bounds are the storage limits, not below them: what fits is taken."""
    token = world["token"]
    good = local_api.send("POST", "/incidents", token, json_body=incident(skill_id="s" * 100, run_id="run-fits"),
                          content_type="application/json; charset=utf-8")
    assert good.status == 202, good.body
    assert local_api.send("POST", "/incidents", token, raw=nested(64).encode()).status == 202
    assert local_api.send("GET", "/failures?offset=1000000", token).status == 200
    assert local_api.send("GET", "/failures?limit=5&offset=0&since_hours=48", token).status == 200  # query coercion
    assert local_api.send("POST", "/routing/agent-1/kpi", token, json_body={"kpi": 1}).status == 200
    simulated = local_api.send("POST", "/costsim/simulate", token, json_body={"plan": {"steps": [STEP]}})
    assert simulated.status == 200, simulated.body
    local_api.drained()


def _invoke(local_api: LocalApi, function: str, event: dict[str, Any]) -> dict[str, Any]:
    answer = local_api.send("POST", f"/_local/functions/{function}/invoke", json_body=event)
    assert answer.status == 200, answer.body
    return dict(answer.body["response"])


@pytest.mark.parametrize("body", ["not base64 at all!", "//79"], ids=["invalid-base64", "base64-of-non-utf8"])
def test_a_base64_flagged_body_that_does_not_decode_is_a_400(local_api: LocalApi, body: str) -> None:
    event = json.loads((EVENTS / "ingest_api_timeout_1.json").read_text())
    event["requestContext"]["authorizer"] = {"tenant_id": TENANT, "role": ""}
    before = local_api.snapshot()
    response = _invoke(local_api, "IngestFunction", {**event, "body": body, "isBase64Encoded": True})
    assert response["statusCode"] == 400, response
    assert_error_shape(Answer(400, response.get("headers") or {}, json.loads(response["body"])))
    assert local_api.snapshot() == before


def test_the_seeds_v1_recovery_form_records_who_from_the_token(local_api: LocalApi, world: dict[str, Any]) -> None:
    token = local_api.token(TENANT, subject="oncall@example.com")
    answer = local_api.send("PATCH", f"/api/v1/failures/{world['failure_id']}/recovery", token,
                            json_body={"recovery_succeeded": True, "notes": "Manual fix applied"})
    assert answer.status == 200, answer.body
    assert answer.body["recovery_succeeded"] is True and answer.body["recovery_notes"] == "Manual fix applied"
    assert answer.body["recovered_by"] == "oncall@example.com"


def test_a_missing_queue_during_ingest_is_a_503_with_retry_after(create_database: Any, tmp_path: Path) -> None:
    """The built IngestFunction, its Bridge 1 queue gone: 503 and Retry-After, as for any unavailable dependency."""
    env = {**os.environ, "DATABASE_URL": create_database()}
    env.pop("AWS_ENDPOINT_URL", None)
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"IngestFunction": {
        "PATTERN_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"}}))
    done = subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", "local", "invoke", "IngestFunction", "-e",
                           str(EVENTS / "ingest_api_timeout_1.json"), "--env-vars", str(env_vars)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads(done.stdout)
    assert response["statusCode"] == 503, response
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): ",".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()})
    assert int(headers["retry-after"]) > 0
    assert_error_shape(Answer(503, headers, json.loads(response["body"])))
