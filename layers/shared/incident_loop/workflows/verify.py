"""The replay verifier's checks, pure: a definition re-run against its audit with the recorded outputs substituted.

No skill is executed. Each step's arguments are resolved from the results the audit recorded for the earlier
ops (exactly as the runner resolved them), and its op is checked:

* sequence: an op is recorded at the step's op_index (and none beyond the definition's last step);
* op_type and skill_version: the step's skill, at the version the registry has now;
* args_hash: the hash of the arguments recomputed from the definition and the earlier results equals the
  recorded one, and the recorded arguments still hash to it (args_integrity);
* result_hash, when the op completed: it has a result, which still hashes to the recorded hash (whatever
  the skill: the runner records the hash of every result, so a result rewritten or cleared is found);
* run_status: the run's status agrees with its ops (a completed run has no failed or pending op; a failed
  run has a failed op, unless it failed as never_started, before any op).

Transient steps are skipped (their recorded results are still substituted for later steps), and so are
the steps after a failed op (the run never reached them), and every step of a run that never started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incident_loop.schemas.workflows import Mismatch, WorkflowDefinition, WorkflowStep
from incident_loop.skills.errors import SkillError
from incident_loop.skills.hashing import canonical_hash
from incident_loop.workflows.ports import Row, SkillSource
from incident_loop.workflows.refs import UnresolvedReference, resolve


@dataclass
class Verification:
    """What the checks found, op by op."""

    ops_total: int = 0
    verified: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def failed(self) -> list[int]:
        """The op indexes with at least one mismatch, in order."""
        return sorted({m.op_index for m in self.mismatches})

    @property
    def first_mismatch(self) -> int | None:
        return self.failed[0] if self.mismatches else None


# The error of a run the relay failed before any op ran (migrations/0013, claim_stale_runs).
NEVER_STARTED = "never_started"


def _current(skills: SkillSource, name: str) -> str | None:
    """The registry's version of a skill; None when it is gone."""
    try:
        skill = skills.get(name)
    except SkillError:
        return None
    return str(skill.version)


def _expected_args(step: WorkflowStep, results: Mapping[int, Any]) -> Any:
    try:
        return resolve(step.args, results)
    except UnresolvedReference:
        return step.args  # the runner recorded the unresolved arguments on the failed op


def check_op(index: int, step: WorkflowStep, op: Row, results: Mapping[int, Any],
             skills: SkillSource) -> list[Mismatch]:
    """Every check of one recorded op against its step; [] when it verifies."""
    mismatches: list[Mismatch] = []

    def mismatch(check: str, expected: Any, found: Any) -> None:
        mismatches.append(Mismatch(op_index=index, op_type=op.get("op_type"), check=check, expected=expected,
                                   found=found))

    if op["op_type"] != step.skill:
        mismatch("op_type", step.skill, op["op_type"])
    version = _current(skills, step.skill)
    if op["skill_version"] is not None and version != op["skill_version"]:
        mismatch("skill_version", version, op["skill_version"])
    expected_hash = canonical_hash(_expected_args(step, results))
    if expected_hash != op["args_hash"]:
        mismatch("args_hash", expected_hash, op["args_hash"])
    if canonical_hash(op["args"]) != op["args_hash"]:
        mismatch("args_integrity", op["args_hash"], canonical_hash(op["args"]))
    if op["status"] == "completed":
        recorded = op["result_hash"]
        actual = None if op["result"] is None else canonical_hash(op["result"])
        if recorded is None or actual != recorded:
            mismatch("result_hash", recorded, actual)
    return mismatches


def verify(definition: WorkflowDefinition, ops: list[Row], skills: SkillSource,
           run: Mapping[str, Any] | None = None) -> Verification:
    """Check every step of `definition` against the run's recorded `ops` (any order), and the run's status
    and error (`run`, its row) against them."""
    by_index = {op["op_index"]: op for op in ops}
    outcome = Verification(ops_total=max(len(definition.steps), len(by_index)))
    status, error = (run or {}).get("status"), (run or {}).get("error_code")
    if status == "failed" and error == NEVER_STARTED and not by_index:
        outcome.skipped.extend(range(len(definition.steps)))
        return outcome
    results: dict[int, Any] = {}
    stopped = False  # a failed op ends the run: the steps after it never ran
    for index, step in enumerate(definition.steps):
        op = by_index.get(index)
        if op is None:
            if stopped:
                outcome.skipped.append(index)
            else:
                outcome.mismatches.append(Mismatch(op_index=index, op_type=step.skill, check="sequence",
                                                   expected={"op_index": index, "op_type": step.skill},
                                                   found=None))
            continue
        recorded = op.get("transient")
        if recorded is not None and bool(recorded) != step.transient:  # the definition changed since the op ran:
            # skipping by it would hide a rewritten result (seed 004: the op's own flag says what is transient)
            outcome.mismatches.append(Mismatch(op_index=index, op_type=step.skill, check="transient",
                                               expected={"transient": bool(recorded)},
                                               found={"transient": step.transient}))
        elif step.transient:
            outcome.skipped.append(index)
        else:
            found = check_op(index, step, op, results, skills)
            outcome.mismatches.extend(found)
            if not found:
                outcome.verified.append(index)
        if op["status"] == "completed":
            results[index] = op["result"]  # substituted for later steps, transient or not
        stopped = stopped or op["status"] == "failed"
    for index in sorted(set(by_index) - set(range(len(definition.steps)))):
        outcome.mismatches.append(Mismatch(op_index=index, op_type=by_index[index]["op_type"], check="sequence",
                                           expected=None, found={"op_index": index,
                                                                 "op_type": by_index[index]["op_type"]}))
    outcome.mismatches.extend(_run_status(status, error, by_index))
    return outcome


def _run_status(status: str | None, error: str | None, by_index: Mapping[int, Row]) -> list[Mismatch]:
    """The run's status against its ops: a completed run whose op failed or never finished, or a failed run
    with no failed op, was changed after the fact (or ended as no runner ends one)."""
    if status == "completed":
        unfinished = [(i, op) for i, op in sorted(by_index.items()) if op["status"] != "completed"]
        if unfinished:
            index, op = unfinished[0]
            return [Mismatch(op_index=index, op_type=op["op_type"], check="run_status",
                             expected={"run": "completed", "op": "completed"},
                             found={"run": "completed", "op": op["status"]})]
    elif status == "failed" and not any(op["status"] == "failed" for op in by_index.values()):
        last = max(by_index, default=0)
        return [Mismatch(op_index=last, op_type=by_index[last]["op_type"] if by_index else None, check="run_status",
                         expected={"run": "failed", "op": "failed"},
                         found={"run": "failed", "error_code": error, "failed_ops": 0})]
    return []
