"""Workflow definitions: references to earlier results, bounds, and what the skill registry refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.workflows import FakeSkill, FakeSkills
from pydantic import ValidationError

from incident_loop.schemas.workflows import (
    MAX_ARGS_BYTES,
    MAX_STEPS,
    Reference,
    WorkflowDefinition,
    _size,
    references,
    template_parts,
)
from incident_loop.workflows.definitions import check_definition
from incident_loop.workflows.errors import InvalidDefinition
from incident_loop.workflows.refs import UnresolvedReference, resolve

ROOT = Path(__file__).resolve().parents[2]


def _definition(*steps: dict[str, Any]) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"steps": list(steps)})


def _reason(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(e["msg"] for e in exc.value.errors())


def test_a_reference_is_parsed_into_its_step_and_path() -> None:
    assert template_parts("${steps.2.result.embeddings.0}") == [Reference(2, ("embeddings", "0"))]
    assert template_parts("n=${steps.0.result} ok") == ["n=", Reference(0, ()), " ok"]
    assert template_parts("cost $${x}") == ["cost ", "${", "x}"]  # $${ is a literal ${


@pytest.mark.parametrize("text", ["${steps.0}", "${step.0.result}", "${steps.x.result}", "${steps.0.result.}",
                                  "oops ${steps.0.result"])
def test_a_malformed_reference_is_refused_with_its_text(text: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _definition({"skill": "echo"}, {"skill": "echo", "args": {"text": text}})
    assert "steps.1.args" in _reason(raised)


def test_a_reference_must_point_to_an_earlier_step() -> None:
    with pytest.raises(ValidationError) as raised:
        _definition({"skill": "echo", "args": {"value": "${steps.1.result.n}"}}, {"skill": "echo"})
    reason = _reason(raised)
    assert "steps.0.args.value" in reason and "refers to step 1" in reason and "earlier step" in reason


def test_a_reference_to_itself_is_refused_too() -> None:
    with pytest.raises(ValidationError, match="refers to step 0"):
        _definition({"skill": "echo", "args": {"value": "${steps.0.result}"}})


def test_references_are_found_at_any_depth_and_never_in_keys() -> None:
    args = {"a": [{"b": "${steps.0.result.x}"}], "${steps.9.result}": "plain"}
    assert list(references(args)) == [(("a", 0, "b"), Reference(0, ("x",)))]


def test_bounds_steps_and_argument_size() -> None:
    with pytest.raises(ValidationError):
        _definition(*[{"skill": "echo"}] * (MAX_STEPS + 1))
    with pytest.raises(ValidationError, match="larger than"):
        _definition({"skill": "echo", "args": {"text": "x" * MAX_ARGS_BYTES}})
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate({"steps": []})
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate({"steps": [{"skill": "echo", "surprise": 1}]})


@pytest.mark.parametrize("transient", ["yes", "true", 1, 0, None])
def test_transient_is_a_json_boolean_not_a_word_or_a_number(transient: Any) -> None:
    """"transient": "yes" was taken as true (pydantic's lax booleans): a typo decided whether replay verifies an op."""
    with pytest.raises(ValidationError, match="steps.0.transient"):
        _definition({"skill": "remember", "args": {}, "transient": transient})
    assert _definition({"skill": "remember", "args": {}, "transient": True}).steps[0].transient is True


def test_arguments_are_bounded_as_the_runner_reads_them_back_from_jsonb() -> None:
    """jsonb writes a number without its exponent: 250 copies of 1e300 (1.5 KB posted) came back as 301-digit
    integers, 75 KB, over the 64 KiB the runner checks again; the run was accepted (202) and failed to load on every
    delivery. Counted as they come back, they are refused at the door; a float with a fraction comes back as it was."""
    with pytest.raises(ValidationError, match=f"steps.0.args is larger than {MAX_ARGS_BYTES} bytes"):
        _definition({"skill": "remember", "args": {"payload": [1e300] * 250}})
    _definition({"skill": "remember", "args": {"payload": [1.5e-300] * 2000}})  # 14 KB, and 14 KB after jsonb
    back = json.loads(json.dumps([1e300, 2.5e20, 1e16]).replace("1e+300", "1" + "0" * 300)
                      .replace("2.5e+20", "250000000000000000000").replace("1e+16", "10000000000000000"))
    assert _size([1e300, 2.5e20, 1e16, 1.5e-7, 1.0]) == len(json.dumps([*back, 1.5e-7, 1.0], separators=(",", ":")))


def test_a_whole_string_reference_keeps_the_json_type_and_an_embedded_one_becomes_text() -> None:
    results = {0: {"value": {"a": [1, 2]}, "n": 3, "s": "hi"}}
    assert resolve({"v": "${steps.0.result.value}", "n": "${steps.0.result.n}"}, results) == {
        "v": {"a": [1, 2]}, "n": 3}
    assert resolve({"t": "${steps.0.result.s}: ${steps.0.result.value.a} / $${literal}"}, results) == {
        "t": 'hi: [1,2] / ${literal}'}
    assert resolve(["${steps.0.result.value.a.1}"], results) == [2]


def test_a_reference_to_a_missing_key_or_step_is_unresolved() -> None:
    with pytest.raises(UnresolvedReference, match="has no 'missing'"):
        resolve({"v": "${steps.0.result.missing}"}, {0: {"value": 1}})
    with pytest.raises(UnresolvedReference, match="no recorded result"):
        resolve({"v": "${steps.1.result}"}, {0: {}})


def test_an_unknown_skill_is_refused_with_the_known_ones() -> None:
    definition = _definition({"skill": "echo"}, {"skill": "teleport"})

    with pytest.raises(InvalidDefinition) as raised:
        check_definition(definition, FakeSkills(FakeSkill("echo")))

    [error] = raised.value.errors
    assert error == {"field": "body.steps.1.skill", "reason": "unknown skill 'teleport'; known: echo"}


def test_literal_arguments_are_checked_against_the_skills_input_but_references_wait_for_the_run() -> None:
    skills = FakeSkills(FakeSkill("echo"))

    with pytest.raises(InvalidDefinition) as raised:
        check_definition(_definition({"skill": "echo", "args": {"colour": "red"}}), skills)
    check_definition(_definition({"skill": "echo", "args": {"value": 1}},
                                 {"skill": "echo", "args": {"colour": "${steps.0.result.n}"}}), skills)

    assert [e["field"] for e in raised.value.errors] == ["body.steps.0.args.colour"]


def test_a_literal_argument_beside_a_reference_is_still_checked() -> None:
    """Only what holds a reference (or holds one inside it) waits for the run: a bad literal next to one is
    refused now (it was accepted, and the run failed at that op with invalid_input)."""
    skills = FakeSkills(FakeSkill("echo"))

    with pytest.raises(InvalidDefinition) as raised:
        check_definition(_definition({"skill": "echo", "args": {"value": 1}},
                                     {"skill": "echo", "args": {"value": "${steps.0.result.n}", "colour": "red"}}),
                         skills)
    check_definition(_definition({"skill": "echo", "args": {"value": 1}},
                                 {"skill": "echo", "args": {"value": {"deep": ["${steps.0.result.n}"]}}}), skills)

    assert [e["field"] for e in raised.value.errors] == ["body.steps.1.args.colour"]


def test_the_seeds_five_step_workflow_is_a_valid_definition() -> None:
    body = json.loads((ROOT / "events" / "workflows" / "five_step.json").read_text())
    definition = WorkflowDefinition.model_validate(body)
    assert [s.skill for s in definition.steps] == ["kv_store", "kv_store", "voyage_embed", "webhook_send",
                                                    "slack_send"]
    assert [ref.step for _, ref in references(definition.steps[4].args)]  # slack refers back
