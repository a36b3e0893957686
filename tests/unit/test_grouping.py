"""Bridge 1's normaliser and matcher on error messages of an agent runtime."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from incident_loop.grouping.matcher import MemoryPatternIndex, classify, decide
from incident_loop.grouping.normalise import signature, template

SIBLINGS = [
    (
        "Skill web_search timed out after 30s calling https://api.example.com/v1/q?id=8812",
        "Skill web_search timed out after 1500ms calling https://api.example.com/v1/q?id=99",
    ),
    (
        "HTTP 503 Service Unavailable from https://svc.example.com/orders/7"
        " (request_id=5c1e9a7e-0b7e-4f6a-9c53-1a2b3c4d5e6f)",
        "HTTP 502 Service Unavailable from https://svc.example.com/orders/81"
        " (request_id=0d9f1b2c-7a6e-4c3d-8b1a-9e8f7d6c5b4a)",
    ),
    ("429 Too Many Requests: rate limit of 10000 tokens/min exceeded, retry after 12s",
     "429 Too Many Requests: rate limit of 90000 tokens/min exceeded, retry after 3s"),
    ("Output failed schema validation: field 'items[3].price' is not a number",
     "Output failed schema validation: field 'total' is not a number"),
    ('File "/app/agent/run.py", line 42, in step', 'File "/srv/agents/planner/loop.py", line 7, in step'),
    (
        "Connection to 10.0.0.5:5432 refused after 3 attempts",
        "Connection to 192.168.1.20:6379 refused after 5 attempts",
    ),
    ("commit 9f8e7d6c5b4a build failed", "commit a1b2c3d4e5f6 build failed"),
]


@pytest.mark.parametrize(("one", "other"), SIBLINGS)
def test_siblings_share_a_template(one: str, other: str) -> None:
    assert template(one) == template(other)


def test_different_failures_keep_different_templates() -> None:
    templates = {template(a) for a, _ in SIBLINGS}
    assert len(templates) == len(SIBLINGS)
    assert template("Skill web_search timed out after 30s") != template("Skill web_search failed after 30s")


def test_signature_depends_on_error_type_and_template() -> None:
    t = template(SIBLINGS[0][0])
    assert signature("SkillTimeoutError", t) != signature("HttpError", t)
    assert signature("SkillTimeoutError", t) == signature("SkillTimeoutError", template(SIBLINGS[0][1]))


def test_signature_is_stable_across_processes() -> None:
    here = signature("SkillTimeoutError", template(SIBLINGS[0][0]))
    code = ("from incident_loop.grouping.normalise import signature, template; "
            f"print(signature('SkillTimeoutError', template({SIBLINGS[0][0]!r})))")
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        assert out == here


def test_exact_fuzzy_and_new_decisions() -> None:
    index = MemoryPatternIndex()
    first = decide("Tool calculator failed on input alpha", "ToolError", "t", index)
    assert first.match_type == "new"
    pid = index.record("t", "ToolError", first)
    again = decide("Tool calculator failed on input alpha", "ToolError", "t", index)
    assert (again.match_type, again.pattern_id, again.confidence) == ("exact", pid, 0.95)
    near = decide("Tool calculator failed on input beta", "ToolError", "t", index)
    assert near.match_type == "fuzzy" and near.pattern_id == pid and 0.75 <= near.confidence < 0.95
    assert near.merged_template == "Tool calculator failed on input <*>"
    other_tenant = decide("Tool calculator failed on input alpha", "ToolError", "t2", index)
    assert other_tenant.match_type == "new"
    other_type = decide("Tool calculator failed on input alpha", "OtherError", "t", index)
    assert other_type.match_type == "new"


def test_fuzzy_join_makes_the_next_sibling_an_exact_hit() -> None:
    index = MemoryPatternIndex()
    pid = index.record("t", "E", decide("lease lost by worker alpha", "E", "t", index))
    index.record("t", "E", decide("lease lost by worker beta", "E", "t", index))
    assert decide("lease lost by worker beta", "E", "t", index).match_type == "exact"
    assert decide("lease lost by worker gamma", "E", "t", index).pattern_id == pid


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("PolicyViolation", "step blocked", ("policy_violation", "policy")),
        ("SkillTimeoutError", "x", ("timeout", "timeout")),
        ("Error", "429 Too Many Requests", ("rate_limit", "rate_limit")),
        ("Error", "schema validation failed", ("validation", "validation")),
        ("Error", "something odd", ("error", "unknown")),
    ],
)
def test_pattern_type_and_category_are_derived_and_never_empty(
    error_type: str, message: str, expected: tuple[str, str]
) -> None:
    assert classify(error_type, message) == expected
