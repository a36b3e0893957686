"""What the skill registry says about a definition, before it is stored: every skill exists, and every step's
literal arguments fit its skill's input model.

Arguments that hold references are checked when the step runs (their values exist only then); a step whose
resolved arguments do not fit fails with the skill's invalid_input error, recorded on its op. The step's
other, literal arguments are checked here: an error about a place that holds a reference, or that holds
one inside it, is left for the run; every other error is the definition's.
"""

from __future__ import annotations

from pydantic import ValidationError

from incident_loop.schemas.workflows import WorkflowDefinition, references
from incident_loop.workflows.errors import InvalidDefinition
from incident_loop.workflows.ports import SkillSource


def _field(*parts: object) -> str:
    return ".".join(str(p) for p in ("body", *parts))


def _related(loc: tuple[object, ...], where: tuple[object, ...]) -> bool:
    """Whether an error at `loc` may be about the value of a reference at `where` (one holds the other)."""
    n = min(len(loc), len(where))
    return loc[:n] == where[:n]


def check_definition(definition: WorkflowDefinition, skills: SkillSource) -> None:
    """InvalidDefinition (422) listing every step whose skill is unknown or whose literal arguments it refuses."""
    known = set(skills.names())
    errors: list[dict[str, str]] = []
    for index, step in enumerate(definition.steps):
        if step.skill not in known:
            errors.append({"field": _field("steps", index, "skill"),
                           "reason": f"unknown skill {step.skill!r}; known: {', '.join(sorted(known))}"})
            continue
        referenced = [where for where, _ in references(step.args)]
        try:
            skills.get(step.skill).Input.model_validate(step.args)
        except ValidationError as exc:
            errors.extend({"field": _field("steps", index, "args", *err["loc"]),
                           "reason": f"{step.skill}: {err['msg']}"} for err in exc.errors()
                          if not any(_related(tuple(err["loc"]), where) for where in referenced))
    if errors:
        raise InvalidDefinition(errors)
