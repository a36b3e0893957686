"""Workflows (seed 004): the definition the API accepts, how a step refers to an earlier result, the queue message,
and what GET /workflows/{id} and the replay verifier answer.

A step's arguments may use an earlier step's result through a reference, written inside any string value:

* `"${steps.0.result}"` is the whole result of step 0; `"${steps.0.result.value}"` one field of it, and
  `"${steps.2.result.embeddings.0}"` an element of a list. A string that is exactly one reference becomes the
  referenced JSON value, whatever its type (a number stays a number, an object an object).
* Inside a longer string the reference is replaced by the value's text: a string as it is, anything else as
  compact JSON (`"dims: ${steps.2.result.dimensions}"`).
* `$${` is a literal `${`.

A reference may only point backwards (to a step that runs earlier). Which skills exist, and whether literal
arguments fit a skill's input model, is checked against the skill registry by incident_loop.workflows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, model_validator

MAX_STEPS = 50
MAX_ARGS_BYTES = 64 * 1024  # one step's arguments, as compact JSON
MAX_DEFINITION_BYTES = 256 * 1024
MAX_PATH_DEPTH = 16
SKILL_NAME = r"^[a-z][a-z0-9_]{0,63}$"

_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_PATH = re.compile(r"^steps\.(\d{1,3})\.result((?:\.[A-Za-z0-9_\-]{1,128})*)$")


class ReferenceSyntaxError(ValueError):
    """A `${...}` that is not a reference to an earlier step's result."""


@dataclass(frozen=True)
class Reference:
    """`${steps.<step>.result.<path...>}`: a value of an earlier step's result."""

    step: int
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "${" + ".".join(["steps", str(self.step), "result", *self.path]) + "}"


def template_parts(text: str) -> list[str | Reference]:
    """A string value split into literal text and references; ReferenceSyntaxError for a malformed `${`."""
    parts: list[str | Reference] = []
    at = 0
    for token in _TOKEN.finditer(text):
        parts.append(text[at:token.start()])
        at = token.end()
        if token.group() == "$${":
            parts.append("${")
            continue
        if token.group(1) is None:
            raise ReferenceSyntaxError(f"unclosed reference at character {token.start()}: write $${{ for a literal ${{")
        found = _PATH.match(token.group(1).strip())
        if found is None:
            raise ReferenceSyntaxError(f"${{{token.group(1)}}} is not a reference of the form "
                                       "${steps.<index>.result[.<key or list index>...]}")
        path = tuple(found.group(2).split(".")[1:])
        if len(path) > MAX_PATH_DEPTH:
            raise ReferenceSyntaxError(f"${{{token.group(1)}}} is deeper than {MAX_PATH_DEPTH} levels")
        parts.append(Reference(int(found.group(1)), path))
    parts.append(text[at:])
    return [part for part in parts if part != ""]


def references(value: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Reference]]:
    """Every reference in a JSON value's strings (keys are never templates), with where it is."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(where, value)]
    while stack:  # an explicit stack: arguments may nest as deep as the boundary allows
        loc, item = stack.pop()
        if isinstance(item, str) and "${" in item:
            for part in template_parts(item):
                if isinstance(part, Reference):
                    yield loc, part
        elif isinstance(item, dict):
            stack.extend(((*loc, key), child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend(((*loc, i), child) for i, child in enumerate(item))


def _size(value: Any) -> int:
    """Bytes of `value` as JSON, as the runner will measure it again once PostgreSQL's jsonb has given it back: jsonb
    writes a number without an exponent, so a float such as 1e300 comes back as an integer of 301 digits (one with
    a fraction comes back as the same float)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) + _expansion(value)


def _expansion(value: Any) -> int:
    """How many characters longer the floats in `value` come back from jsonb (as integers) than they are now."""
    if isinstance(value, float):
        written = format(Decimal(repr(value)), "f")  # as PostgreSQL's numeric writes it
        return len(written) - len(repr(value)) if "." not in written else 0
    if isinstance(value, dict):
        return sum(_expansion(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_expansion(item) for item in value)
    return 0


class WorkflowStep(BaseModel):
    """One op: a skill, its arguments (which may refer to earlier results), and whether replay skips it."""

    model_config = ConfigDict(extra="forbid")

    skill: str = Field(pattern=SKILL_NAME, description="A registered skill: kv_store, slack_send, webhook_send, "
                                                        "voyage_embed")
    args: dict[str, Any] = Field(default_factory=dict, description="The skill's input; string values may hold "
                                                                   "${steps.N.result...} references")
    transient: bool = Field(default=False, strict=True, description="Recorded, but not verified on replay")


class WorkflowDefinition(BaseModel):
    """An ordered list of steps, run one after the other; each step's op_index is its position (from 0)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _bounded_and_backwards(self) -> WorkflowDefinition:
        if _size(self.model_dump(mode="json")) > MAX_DEFINITION_BYTES:
            raise ValueError(f"the definition is larger than {MAX_DEFINITION_BYTES} bytes as JSON")
        for index, step in enumerate(self.steps):
            if _size(step.args) > MAX_ARGS_BYTES:
                raise ValueError(f"steps.{index}.args is larger than {MAX_ARGS_BYTES} bytes as JSON")
            try:
                for loc, ref in references(step.args, ("steps", index, "args")):
                    if ref.step >= index:
                        where = ".".join(map(str, loc))
                        raise ValueError(f"{where}: {ref} refers to step {ref.step}, which does not run before "
                                         f"step {index}; a reference must point to an earlier step")
            except ReferenceSyntaxError as exc:
                raise ValueError(f"steps.{index}.args: {exc}") from exc
        return self


RunStatus = Literal["queued", "running", "completed", "failed"]
FINISHED: tuple[RunStatus, ...] = ("completed", "failed")  # a run in these never changes again


class WorkflowAccepted(BaseModel):
    """POST /workflows: the run is stored and queued; poll status_url."""

    workflow_run_id: str
    status: RunStatus
    status_url: str


class WorkflowMessage(BaseModel):
    """What the workflow queue carries: which run to work on. The definition stays in PostgreSQL.

    `segment` counts continuations: a run that would outlast its invocation hands itself on in a new
    message with the next segment (the idempotency key includes it).
    """

    model_config = ConfigDict(extra="forbid")

    workflow_run_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)
    segment: int = Field(default=0, ge=0, le=10_000)
    correlation_id: str = Field(min_length=1, max_length=128)
    # When the relay (workflows.relay) sent this message again, epoch seconds; 0 for a run's own message. Part
    # of the runner's idempotency key: a message the relay sends is never answered with what an earlier one of
    # the same run was answered (a run failed as never_started, then set back to queued by an operator).
    relayed_at: int = Field(default=0, ge=0)


class WorkflowRecord(SqsRecordModel):
    """An SQS record whose body is a WorkflowMessage (parsed by the batch processor)."""

    body: Json[WorkflowMessage]  # type: ignore[assignment]


class OpView(BaseModel):
    """One audited op (m11_audit.ops), as GET /workflows/{id} shows it."""

    op_id: str
    op_index: int
    op_type: str
    skill_version: str | None
    args: dict[str, Any] | None = Field(description="The op's arguments as resolved (null when omitted)")
    args_hash: str
    result: dict[str, Any] | None
    result_hash: str | None
    status: Literal["pending", "completed", "failed"]
    error_code: str | None
    error_message: str | None
    duration_ms: int | None
    transient: bool
    idempotency_key: str | None
    created_at: datetime
    completed_at: datetime | None
    omitted: bool = Field(default=False, description=(
        "args and result are left out of GET /workflows/{id}, which stays under Lambda's 6 MB answer: from the first"
        " op whose args and result would not fit on, every op's are. GET /workflows/{id}/ops/{op_index} has them"))


class WorkflowRunView(BaseModel):
    """GET /workflows/{id}: the run's status and every op recorded so far, in order."""

    workflow_run_id: str
    name: str | None
    status: RunStatus
    error_code: str | None
    error_message: str | None
    steps: int = Field(description="Steps in the definition")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    total_duration_ms: int
    ops: list[OpView]


class Mismatch(BaseModel):
    """One op the replay could not verify: which check failed, what it should be, and what the audit holds.

    For result_hash, `expected` is the hash recorded when the op completed and `found` the hash of the result
    stored now; for the other checks `expected` comes from the definition (and the earlier recorded results).
    """

    op_index: int
    op_type: str | None
    check: str = Field(description="sequence, op_type, skill_version, transient, args_hash, args_integrity,"
                                   " result_hash or run_status")
    expected: Any
    found: Any


class ReplayReport(BaseModel):
    """POST /workflows/{id}/replay: the verification, recorded in m11_audit.replay_runs."""

    replay_id: str
    workflow_run_id: str
    mode: str
    status: Literal["verified", "mismatch"]
    severity: Literal["INFO", "CRITICAL"]
    ops_total: int
    ops_verified: int
    ops_failed: int = Field(description="Ops that did not verify (mismatches)")
    ops_skipped: int = Field(description="Transient ops, and steps the run never reached")
    first_mismatch_op_index: int | None
    mismatches: list[Mismatch]
    skills_executed: int = Field(description="Skill calls made by the replay: always 0, outputs are substituted")
    duration_ms: float
    text: str
