"""The skills' contract: canonical hashing, deterministic keys and backoff, the context, errors, the registry."""

from __future__ import annotations

import pytest

from incident_loop.skills import registry
from incident_loop.skills.base import SkillContext
from incident_loop.skills.deterministic import backoff_delays, idempotency_key, jittered
from incident_loop.skills.errors import (
    CircuitOpen,
    ExternalError,
    IdempotencyConflict,
    SizeLimitExceeded,
    SkillError,
    SkillInputError,
    UnknownSkill,
)
from incident_loop.skills.hashing import canonical_hash, canonical_json


def test_canonical_json_sorts_keys_compactly_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1, {"d": 2, "c": "é"}], "a": None}) == '{"a":null,"b":[1,{"c":"é","d":2}]}'


def test_canonical_hash_is_independent_of_key_order_and_prefixed() -> None:
    first, second = canonical_hash({"a": 1, "b": [1, 2]}), canonical_hash({"b": [1, 2], "a": 1})
    assert first == second and first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert canonical_hash({"a": 1, "b": [2, 1]}) != first


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_idempotency_key_is_a_function_of_run_and_index() -> None:
    assert idempotency_key("run-1", 3) == idempotency_key("run-1", 3)
    assert idempotency_key("run-1", 3) != idempotency_key("run-1", 4)
    assert idempotency_key("run-1", 3) != idempotency_key("run-2", 3)
    assert idempotency_key("run-1", 3).startswith("wf:")


def test_same_key_gives_the_same_backoff_delays() -> None:
    assert backoff_delays("key-a", 5, 0.5, 8.0) == backoff_delays("key-a", 5, 0.5, 8.0)


def test_different_keys_give_different_delays_within_bounds() -> None:
    a, b = backoff_delays("key-a", 5, 0.5, 8.0), backoff_delays("key-b", 5, 0.5, 8.0)
    assert a != b
    for attempt, (x, y) in enumerate(zip(a, b, strict=True)):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= x <= ceiling and ceiling / 2 <= y <= ceiling


def test_backoff_is_capped() -> None:
    assert max(backoff_delays("k", 10, 1.0, 3.0)) <= 3.0


def test_jitter_stays_within_its_spread_and_is_stable() -> None:
    values = {jittered(f"k{i}", "s", 100.0, 0.1) for i in range(50)}
    assert all(90.0 <= v <= 110.0 for v in values) and len(values) > 40
    assert jittered("k1", "s", 100.0) == jittered("k1", "s", 100.0)


def test_context_prefers_the_given_key_then_derives_one() -> None:
    assert SkillContext("t", idempotency_key="given", workflow_run_id="r", op_index=1).key() == "given"
    assert SkillContext("t", workflow_run_id="r", op_index=0).key() == idempotency_key("r", 0)
    assert SkillContext("t").key() is None
    assert SkillContext("t", workflow_run_id="r").key() is None


def test_errors_carry_codes_and_retryability() -> None:
    assert (SkillInputError("x").code, SkillInputError("x").retryable) == ("invalid_input", False)
    assert isinstance(SizeLimitExceeded("x"), SkillInputError) and SizeLimitExceeded("x").code == "size_limit_exceeded"
    assert (IdempotencyConflict("x").code, IdempotencyConflict("x").retryable) == ("idempotency_conflict", False)
    assert (CircuitOpen("x", target="t").code, CircuitOpen("x", target="t").retryable) == ("circuit_open", True)
    error = ExternalError("boom", code="http_500", retryable=True, status=500, retry_after_s=2.0)
    assert str(error) == "boom" and error.to_dict() == {"code": "http_500", "message": "boom", "retryable": True,
                                                        "status": 500, "retry_after_s": 2.0}


def test_registry_lists_the_four_skills_and_builds_each() -> None:
    assert registry.names() == ("kv_store", "slack_send", "webhook_send", "voyage_embed")
    for name in registry.names():
        cls = registry.skill_class(name)
        assert cls.name == name and cls.version == "1.0.0" and isinstance(cls.deterministic, bool)


def test_an_unknown_skill_is_a_key_error_and_an_input_error() -> None:
    with pytest.raises(UnknownSkill) as caught:
        registry.get("email_send")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, SkillInputError)
    assert isinstance(caught.value, SkillError) and "email_send" in str(caught.value)
    assert not str(caught.value).startswith("'")  # the message, not KeyError's quoted repr


@pytest.mark.parametrize(("args", "fragment"), [
    ({"op": "get"}, "key"),
    ({"op": "fetch", "key": "k"}, "op"),
    ({"op": "set", "key": "k"}, "needs a value"),
    ({"op": "get", "key": "k", "surprise": 1}, "surprise"),
])
def test_bad_arguments_are_an_input_error_naming_the_field(args: dict, fragment: str) -> None:
    skill = registry.skill_class("kv_store")(kv=object(), persistence=object())  # type: ignore[call-arg]
    with pytest.raises(SkillInputError) as caught:
        skill.execute(args, SkillContext("tenant-a"))
    assert fragment in str(caught.value) and caught.value.code == "invalid_input"


def test_a_tenant_with_the_key_separator_is_refused() -> None:
    skill = registry.skill_class("kv_store")(kv=object(), persistence=object())  # type: ignore[call-arg]
    with pytest.raises(SkillInputError):
        skill.execute({"op": "get", "key": "k"}, SkillContext("a#b"))
