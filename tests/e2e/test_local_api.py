"""`incident-loop local start-api`: the built functions over real HTTP, through the template's authorizer.

One server for the module, started as a user would (a subprocess, DATABASE_URL set, tokens from
`incident-loop local token`). Tenant A runs a loop to the end; tenant B then tries every route of
the template on A's ids and must read, list and change nothing of A's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incident_loop.auth.tokens import KeySet, issue
from incident_loop_dev.local.services import free_port
from incident_loop_dev.local.template import read_app

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
pytestmark = pytest.mark.e2e


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


class Api:
    """A client of the local API: (status, JSON or text)."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def drained(self, timeout: float = 90) -> dict[str, int]:
        """Wait until every queue is empty twice in a row (the consumers have caught up)."""
        deadline, quiet = time.monotonic() + timeout, 0
        depths: dict[str, int] = {}
        while time.monotonic() < deadline:
            _, found = self.call("GET", "/_local/queues")
            depths = found["queues"]
            quiet = quiet + 1 if not any(depths.values()) else 0
            if quiet >= 2:
                return depths
            time.sleep(0.3)
        raise AssertionError(f"queues did not drain: {depths}")


@pytest.fixture(scope="module")
def server(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    admin_url = create_database()
    env = {**os.environ, "DATABASE_URL": admin_url}
    env.pop("AWS_ENDPOINT_URL", None)
    port = free_port()
    logs = (tmp_path_factory.mktemp("start-api") / "stderr.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "incident_loop_dev.cli", "local", "start-api", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=logs, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != f"listening on http://127.0.0.1:{port}":
        proc.kill()
        logs.seek(0)
        pytest.fail(f"start-api did not start (first line {line!r}); stderr:\n{logs.read()[-4000:]}", pytrace=False)
    try:
        yield {"api": Api(f"http://127.0.0.1:{port}"), "env": env, "admin_url": admin_url, "logs": logs}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _token(server: dict[str, Any], tenant: str, *extra: str) -> str:
    done = _cli("local", "token", "--tenant", tenant, *extra, env=server["env"])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


PLAN = {"plan": {"steps": [{"skill": "web_search", "model": "small", "tokens_in": 1200, "tokens_out": 300}]}}
# A workflow on kv_store only: no external service runs beside start-api.
WORKFLOW = {"steps": [{"skill": "kv_store", "args": {"op": "set", "key": "k", "value": "mine"}},
                      {"skill": "kv_store", "args": {"op": "get", "key": "k"}}]}


def _body(name: str) -> dict[str, Any]:
    return dict(json.loads(json.loads((EVENTS / name).read_text())["body"]))


@pytest.fixture(scope="module")
def tenant_a(server: dict[str, Any]) -> dict[str, Any]:
    """Tenant A's loop, run to the end over HTTP: incidents, an approved checkpoint, a confirmed policy."""
    api: Api = server["api"]
    token = _token(server, "tenant-a")
    status, first = api.call("POST", "/incidents", token, _body("ingest_api_timeout_1.json"))
    assert status == 202, first
    api.drained()
    status, checkpoints = api.call("GET", "/checkpoints", token)
    assert status == 200 and len(checkpoints["checkpoints"]) == 1, checkpoints
    checkpoint = checkpoints["checkpoints"][0]
    status, _ = api.call("POST", f"/checkpoints/{checkpoint['checkpoint_id']}/resolve", token,
                         {"resolution": "approve", "resolved_by": "oncall@a.example"})
    assert status == 200
    api.drained()
    status, found = api.call("GET", "/policies", token)
    assert status == 200 and len(found["policies"]) == 1, found
    policy = found["policies"][0]
    status, failures = api.call("GET", "/failures", token)
    assert status == 200 and failures["count"] == 1, failures
    status, loop = api.call("GET", f"/loops/{first['incident_id']}", token)
    assert status == 200 and loop["is_complete"], loop
    agent = _body("ingest_api_timeout_1.json")["agent_id"]
    status, routing = api.call("GET", f"/routing/{agent}", token)
    assert status == 200
    status, simulated = api.call("POST", "/costsim/simulate", token, PLAN)
    assert status == 200 and simulated["provenance_recorded"] is True, simulated
    status, accepted = api.call("POST", "/workflows", token, WORKFLOW)
    assert status == 202, accepted
    api.drained()
    status, workflow = api.call("GET", f"/workflows/{accepted['workflow_run_id']}", token)
    assert status == 200 and workflow["status"] == "completed", workflow
    for event in ("checkpoint_created", "policy_activated"):  # set last: nothing above is announced
        status, targets = api.call("PUT", f"/notifications/{event}", token, _targets("tenant-a"))
        assert status == 200, targets
    return {"token": token, "incident_id": first["incident_id"], "checkpoint": checkpoint, "policy": policy,
            "failure": failures["failures"][0], "agent_id": agent, "routing": routing, "loop": loop,
            "workflow_run_id": accepted["workflow_run_id"]}


def _targets(tenant: str) -> dict[str, Any]:
    return {"webhook": {"url": f"https://hooks.example.com/{tenant}",
                        "secret_parameter": f"/incident-loop/local/tenants/{tenant}/hook"}}


def _undecayed(routing: dict[str, Any]) -> dict[str, Any]:
    """The routing view without what decays with the clock (effective magnitudes)."""
    return {**{k: v for k, v in routing.items() if k != "total_effective_magnitude"},
            "adjustments": [{k: v for k, v in adj.items() if k != "effective_magnitude"}
                            for adj in routing.get("adjustments", [])]}


def _snapshot(api: Api, a: dict[str, Any]) -> dict[str, Any]:
    """Everything of A's that B might change, read as A."""
    token = a["token"]
    return {
        "loop": api.call("GET", f"/loops/{a['incident_id']}", token)[1],
        "checkpoints": api.call("GET", "/checkpoints?status=all", token)[1],
        "policies": api.call("GET", "/policies", token)[1],
        "routing": _undecayed(api.call("GET", f"/routing/{a['agent_id']}", token)[1]),
        "failure": api.call("GET", f"/failures/{a['failure']['id']}", token)[1],
        "graduation": api.call("GET", "/graduation", token)[1],
        "stats": api.call("GET", "/failures/stats", token)[1],
        "workflow": api.call("GET", f"/workflows/{a['workflow_run_id']}", token)[1],
        "notifications": api.call("GET", "/notifications", token)[1],
    }


def _no_ids_of(a: dict[str, Any], payload: Any) -> None:
    text = json.dumps(payload)
    for key in (a["incident_id"], a["checkpoint"]["checkpoint_id"], a["policy"]["policy_id"], str(a["failure"]["id"]),
                a["workflow_run_id"]):
        assert key not in text, f"{key} of tenant A leaked: {text[:500]}"


def test_tenant_b_reads_lists_and_changes_nothing_of_tenant_a(server: dict[str, Any], tenant_a: dict[str, Any]) -> None:
    api: Api = server["api"]
    a = tenant_a
    b = _token(server, "tenant-b")
    before = _snapshot(api, a)
    feedback = {"by": "mallory@b.example", "reason": "not mine"}

    covered: dict[tuple[str, str], Any] = {
        ("GET", "/loops/{incident_id}"): api.call("GET", f"/loops/{a['incident_id']}", b),
        ("GET", "/checkpoints"): api.call("GET", "/checkpoints?status=all", b),
        ("POST", "/checkpoints/{checkpoint_id}/resolve"): api.call(
            "POST", f"/checkpoints/{a['checkpoint']['checkpoint_id']}/resolve", b,
            {"resolution": "reject", "resolved_by": "mallory@b.example"}),
        ("GET", "/policies"): api.call("GET", "/policies", b),
        ("POST", "/policies/{policy_id}/confirm"): api.call("POST", f"/policies/{a['policy']['policy_id']}/confirm",
                                                            b, feedback),
        ("POST", "/policies/{policy_id}/regret"): api.call("POST", f"/policies/{a['policy']['policy_id']}/regret",
                                                           b, feedback),
        ("GET", "/routing/{agent_id}"): api.call("GET", f"/routing/{a['agent_id']}", b),
        ("POST", "/routing/{agent_id}/kpi"): api.call("POST", f"/routing/{a['agent_id']}/kpi", b, {"kpi": 0.0}),
        ("GET", "/graduation"): api.call("GET", "/graduation", b),
        ("GET", "/failures"): api.call("GET", "/failures?status=all", b),
        ("GET", "/failures/stats"): api.call("GET", "/failures/stats", b),
        ("GET", "/failures/unrecovered"): api.call("GET", "/failures/unrecovered", b),
        ("GET", "/failures/{failure_id}"): api.call("GET", f"/failures/{a['failure']['id']}", b),
        ("PATCH", "/failures/{failure_id}/recovery"): api.call(
            "PATCH", f"/failures/{a['failure']['id']}/recovery", b, {"succeeded": True, "by": "mallory"}),
        ("PATCH", "/api/v1/failures/{failure_id}/recovery"): api.call(
            "PATCH", f"/api/v1/failures/{a['failure']['id']}/recovery", b, {"recovery_succeeded": True}),
        ("POST", "/incidents"): api.call("POST", "/incidents", b, _body("ingest_api_timeout_1.json")),
        ("POST", "/costsim/simulate"): api.call("POST", "/costsim/simulate", b, PLAN),
        ("GET", "/costsim/status"): api.call("GET", "/costsim/status", b),
        ("POST", "/costsim/breaker/disable"): api.call("POST", "/costsim/breaker/disable", b,
                                                       {"reason": "mine now", "by": "mallory"}),
        ("POST", "/costsim/breaker/enable"): api.call("POST", "/costsim/breaker/enable", b, {"by": "mallory"}),
        ("GET", "/costsim/canary/reports"): api.call("GET", "/costsim/canary/reports", b),
        ("GET", "/health"): api.call("GET", "/health"),
        ("POST", "/workflows"): api.call("POST", "/workflows", b, WORKFLOW),
        ("GET", "/workflows/{workflow_run_id}"): api.call("GET", f"/workflows/{a['workflow_run_id']}", b),
        ("GET", "/workflows/{workflow_run_id}/ops/{op_index}"): api.call(
            "GET", f"/workflows/{a['workflow_run_id']}/ops/0", b),
        ("POST", "/workflows/{workflow_run_id}/replay"): api.call("POST", f"/workflows/{a['workflow_run_id']}/replay",
                                                                  b),
        ("GET", "/notifications"): api.call("GET", "/notifications", b),
        ("PUT", "/notifications/{event}"): api.call("PUT", "/notifications/policy_activated", b, _targets("tenant-b")),
        ("DELETE", "/notifications/{event}"): api.call("DELETE", "/notifications/checkpoint_created", b),
    }
    routes = {(r.method.upper(), r.path) for fn in read_app(ROOT).functions.values() for r in fn.routes}
    assert set(covered) == routes, f"routes without an isolation check: {routes - set(covered)}"

    # By id: nothing of A's exists for B (the 404 may only echo the id B sent).
    by_id = {("GET", "/loops/{incident_id}"), ("POST", "/checkpoints/{checkpoint_id}/resolve"),
             ("POST", "/policies/{policy_id}/confirm"), ("POST", "/policies/{policy_id}/regret"),
             ("GET", "/failures/{failure_id}"), ("PATCH", "/failures/{failure_id}/recovery"),
             ("PATCH", "/api/v1/failures/{failure_id}/recovery"), ("GET", "/workflows/{workflow_run_id}"),
             ("GET", "/workflows/{workflow_run_id}/ops/{op_index}"), ("POST", "/workflows/{workflow_run_id}/replay")}
    for route in by_id:
        assert covered[route][0] == 404, (route, covered[route])
        assert set(covered[route][1]) == {"message"}, covered[route]
    # Lists and aggregates: none of A's rows, none of A's counts.
    for route, status_payload in covered.items():
        if route in by_id | {("POST", "/incidents"), ("GET", "/health"), ("POST", "/workflows")}:
            continue
        _no_ids_of(a, status_payload[1])
    assert covered[("GET", "/checkpoints")][1]["checkpoints"] == []
    assert covered[("GET", "/policies")][1]["policies"] == []
    assert covered[("GET", "/failures")][1]["failures"] == []
    assert covered[("GET", "/failures/unrecovered")][1]["failures"] == []
    assert covered[("GET", "/routing/{agent_id}")][1]["active_adjustments"] == 0
    # The same report from B is B's own incident, not a duplicate of A's.
    status, mine = covered[("POST", "/incidents")]
    assert status == 202 and mine["duplicate"] is False and mine["incident_id"] != a["incident_id"]
    # Provenance is per tenant: A's simulation of the same plan is no answer to B.
    assert covered[("POST", "/costsim/simulate")][0] == 200
    assert covered[("POST", "/costsim/simulate")][1]["provenance_recorded"] is True
    # B's workflow is B's own run (another id), run on B's kv namespace.
    status, theirs = covered[("POST", "/workflows")]
    assert status == 202 and theirs["workflow_run_id"] != a["workflow_run_id"]
    # B's notification targets are B's own: none of A's listed, A's not removed, B's set beside them.
    assert covered[("GET", "/notifications")][1] == {"notifications": []}
    assert covered[("DELETE", "/notifications/{event}")][0] == 404
    status, mine = covered[("PUT", "/notifications/{event}")]
    assert status == 200 and [n["targets"]["webhook"]["url"] for n in mine["notifications"]] == [
        "https://hooks.example.com/tenant-b"]
    # Operator switches need the operator role.
    assert covered[("POST", "/costsim/breaker/disable")][0] == 403
    assert covered[("POST", "/costsim/breaker/enable")][0] == 403
    api.drained()
    # And A's state is exactly what it was.
    assert _snapshot(api, a) == before


@pytest.mark.parametrize("how", ["none", "forged", "expired", "other-keys", "garbage"])
def test_requests_without_a_valid_token_get_401_on_every_guarded_route(server: dict[str, Any], how: str) -> None:
    api: Api = server["api"]
    real = _token(server, "tenant-a")
    header, claims, signature = real.split(".")
    token = {
        "none": None,
        "forged": f"{header}.{claims}.{signature[::-1]}",
        "expired": issue(KeySet.parse({"active_kid": "k1", "k1": "x" * 40}), "tenant-a", ttl_s=1, now=1_000_000),
        "other-keys": issue(KeySet.generate(), "tenant-a"),
        "garbage": "not-a-jwt",
    }[how]
    spec = read_app(ROOT)
    for fn in spec.functions.values():
        for route in fn.routes:
            if spec.authorizer_for(route) is None:
                continue
            path = route.path.replace("{", "").replace("}", "")
            status, payload = api.call(route.method.upper(), path, token, {} if route.method != "GET" else None)
            assert status == 401, (how, route.method, route.path, status, payload)
            assert "message" in payload


def test_a_token_issued_with_the_real_keys_but_expired_gets_401(server: dict[str, Any]) -> None:
    api: Api = server["api"]
    done = _cli("local", "token", "--tenant", "tenant-a", "--ttl", "1", env=server["env"])
    token = done.stdout.strip().splitlines()[-1]
    time.sleep(2.1)
    assert api.call("GET", "/checkpoints", token)[0] == 401


def test_the_operator_role_may_switch_the_breaker_and_a_tenant_role_may_not(server: dict[str, Any]) -> None:
    api: Api = server["api"]
    operator = _token(server, "platform", "--role", "operator")
    status, body = api.call("POST", "/costsim/breaker/disable", operator, {"reason": "drill", "by": "ops"})
    assert status == 200, body
    status, body = api.call("POST", "/costsim/breaker/enable", operator, {"by": "ops"})
    assert status == 200, body
    assert api.call("POST", "/costsim/breaker/enable", _token(server, "tenant-a"), {"by": "x"})[0] == 403


def test_health_needs_no_token_and_unknown_routes_answer_like_api_gateway(server: dict[str, Any]) -> None:
    api: Api = server["api"]
    status, body = api.call("GET", "/health")
    assert status in (200, 503) and "database" in json.dumps(body)
    assert api.call("GET", "/no-such-route", _token(server, "tenant-a")) == (
        403, {"message": "Missing Authentication Token"})
