"""The fuzz probe of issue 10, kept: schemathesis over `incident-loop local start-api` with real tokens.

Every operation of the committed OpenAPI document (docs/openapi.json) gets cases that fit its schema
(positive), cases that do not (negative), and, where it has path parameters, fitting cases aimed at
rows that exist (one incident run to its checkpoint, its failure, its policy once approved). The seed
and the example count are fixed, so a run is the same every time and stays short enough for CI.

Every response must be no server error (0 allowed), carry a status the document declares for the
operation, in the declared content type and headers, with a body that fits the declared schema; every
negative case must be rejected with a 4xx. FUZZ_EXAMPLES=N runs longer probes with the same checks.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from local_http import LocalApi
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.json"
SEED = 20261123
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))  # per operation and kind of case
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
pytestmark = pytest.mark.e2e

SCHEMA = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
TALLY: dict[str, Counter[int]] = {}


@pytest.fixture(scope="module")
def world(local_api: LocalApi) -> dict[str, Any]:
    """Real rows for the path parameters, and an operator's token (every route may be called with it)."""
    token = local_api.token("tenant-fuzz", "operator", subject="fuzz@example.com")
    body = json.loads(json.loads((ROOT / "events" / "ingest_api_timeout_1.json").read_text())["body"])
    accepted = local_api.send("POST", "/incidents", token, json_body=body)
    assert accepted.status == 202, accepted.body
    local_api.drained()
    checkpoint = local_api.send("GET", "/checkpoints", token).body["checkpoints"][0]
    failure = local_api.send("GET", "/failures", token).body["failures"][0]
    workflow = local_api.send("POST", "/workflows", token, json_body={"steps": [
        {"skill": "kv_store", "args": {"op": "set", "key": "fuzz", "value": 1}}]})
    assert workflow.status == 202, workflow.body
    local_api.drained()
    return {"token": token, "ids": {"incident_id": accepted.body["incident_id"],
                                    "checkpoint_id": checkpoint["checkpoint_id"], "failure_id": failure["id"],
                                    "policy_id": "pol_unknown", "agent_id": body["agent_id"],
                                    "workflow_run_id": workflow.body["workflow_run_id"], "op_index": 0,
                                    "event": "checkpoint_created"}}


def _strategies(operation: Any, ids: dict[str, Any]) -> dict[str, Any]:
    kinds = {"positive": operation.as_strategy(GenerationMode.POSITIVE),
             "negative": operation.as_strategy(GenerationMode.NEGATIVE)}
    names = [p.name for p in operation.path_parameters]
    if names:
        kinds["existing"] = operation.as_strategy(GenerationMode.POSITIVE,
                                                  path_parameters={n: ids[n] for n in names})
    return kinds


def _run(strategy: Any, send: Callable[[Any], None], negative: bool) -> None:
    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        send(case)

    try:
        fuzz()
    except Unsatisfiable:
        # Negative cases of an operation whose every input is valid (no parameters, or one free
        # string in the path) do not exist; its positive cases still ran.
        if not negative:
            raise


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_every_operation_answers_generated_requests_without_a_server_error(
        local_api: LocalApi, world: dict[str, Any], operation: Any) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {world['token']}"}
    statuses: Counter[int] = TALLY.setdefault(operation.label, Counter())
    failures: list[str] = []

    def send(case: Any) -> None:
        response = case.call(base_url=local_api.base, session=session, headers=headers, timeout=60)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - schemathesis raises a group of failures
            if len(failures) < 5:
                failures.append(f"{response.status_code} {response.text[:300]}\n{exc}")
            else:
                failures.append("...")

    for kind, strategy in _strategies(operation, world["ids"]).items():
        _run(strategy, send, negative=kind == "negative")
    local_api.drained()
    assert not failures, f"{len(failures)} failing cases; the first:\n" + "\n\n".join(failures[:5])
    assert sum(statuses.values()) >= 1, statuses  # it did run (an operation without parameters has one case)


def test_the_fuzz_run_sent_requests_to_every_operation_and_got_no_server_error(
        local_api: LocalApi, record_property: Any, request: pytest.FixtureRequest) -> None:
    total = Counter[int]()
    for statuses in TALLY.values():
        total.update(statuses)
    if len(TALLY) != len(OPERATIONS):
        # Only a run narrowed by hand (-k, -m, or a test id) may leave operations out; a whole run (CI's
        # `make test`) that did fails here, never skips.
        options = request.config.option
        narrowed = bool(options.keyword or options.markexpr) or any("::" in arg for arg in request.config.args)
        if not narrowed:
            pytest.fail(f"the fuzz run reached {len(TALLY)} of {len(OPERATIONS)} operations")
        pytest.skip("only part of the fuzz run was selected")
    server_errors = sum(n for status, n in total.items() if status >= 500)
    # What the run set going reached its consumers and nothing of the loop was dead-lettered (alerts of
    # the breaker switches are: no Alertmanager runs here, so AlertQueue's redrive is expected).
    dead = {name: n for name, n in local_api.dead_letters().items() if name != "AlertQueueDLQ"}
    # Printed at the end of the run (tests/conftest.py), from whichever worker ran the fuzz module.
    record_property("summary", f"fuzz: {len(TALLY)} operations, {sum(total.values())} requests, seed {SEED}, "
                    f"{EXAMPLES} examples per kind; statuses {dict(sorted(total.items()))}; "
                    f"server errors {server_errors}; dead letters {dead}")
    assert server_errors == 0 and not dead
