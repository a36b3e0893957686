"""Running a workflow: step by step, each op audited before and after its skill runs, resumable anywhere.

For each step the arguments are resolved from the results recorded so far, the op is claimed `pending` (one
row per (run, op_index) however often the message comes), the skill executes under the op's idempotency key
(skills.deterministic.idempotency_key(run, op_index)), and the outcome is recorded. A crash or a redelivery
resumes at the first op without an outcome: a completed op is never run again, and a pending one runs again
under the same key, so a skill whose effect already happened returns its stored result instead of repeating it.

* A non-retryable SkillError (bad input, a 4xx, an idempotency conflict) fails the op and the run.
* A retryable one (timeouts, 5xx, 429, an open breaker) is noted on the pending op and raised: the SQS record
  fails, is delivered again, and after maxReceiveCount rests in the dead-letter queue.
* One worker at a time holds the run (a lease in workflow_runs); another delivery meanwhile raises RunBusy.
* A run that would outlast its invocation continues in a new message (the next segment) before time runs out.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from incident_loop.db import DatabaseUnavailable
from incident_loop.observability import logger, metrics
from incident_loop.schemas.workflows import FINISHED, WorkflowDefinition, WorkflowMessage, WorkflowStep
from incident_loop.skills.base import SkillContext
from incident_loop.skills.deterministic import idempotency_key
from incident_loop.skills.errors import SkillError
from incident_loop.skills.hashing import canonical_hash
from incident_loop.workflows.errors import RunBusy, RunNotStored
from incident_loop.workflows.ports import AuditStore, NewOp, Row, SkillSource, WorkflowQueue
from incident_loop.workflows.refs import UnresolvedReference, resolve
from incident_loop.workflows.wiring import audit_store, skill_source, workflow_queue

DEFAULT_OP_BUDGET_S = 60.0  # a skill that does not say how long one call may take
LEASE_MARGIN_S = 30.0


def op_budget_s(skill: Any) -> float:
    """The longest one op of this skill may take (its call_budget_s(), when it declares one)."""
    budget = getattr(skill, "call_budget_s", None)
    return float(budget()) if callable(budget) else DEFAULT_OP_BUDGET_S


def op_id(run_id: str, op_index: int) -> str:
    """An op's id: the run's id and its index (the same op always has the same id)."""
    return f"{run_id}.{op_index}"


class _Run:
    """One worker's pass over one run: its stores, the ops recorded so far, and what it did."""

    def __init__(self, message: WorkflowMessage, audit: AuditStore, skills: SkillSource, owner: str,
                 ops: dict[int, Row]) -> None:
        self.message, self.audit, self.skills, self.owner, self.ops = message, audit, skills, owner, ops
        self.tenant, self.run_id = message.tenant_id, message.workflow_run_id

    def results(self) -> dict[int, Any]:
        return {index: op["result"] for index, op in self.ops.items() if op["status"] == "completed"}

    def finish(self, status: str, code: str | None = None, message: str | None = None) -> dict[str, Any]:
        with self.audit.begin(self.tenant):
            self.audit.finish_run(self.tenant, self.run_id, status, code, message)
        metrics.add_metric(name="WorkflowRunsCompleted" if status == "completed" else "WorkflowRunsFailed",
                           unit=MetricUnit.Count, value=1)
        logger.info("workflow finished", status=status, error_code=code, ops=len(self.ops))
        return {"workflow_run_id": self.run_id, "status": status, "error_code": code}

    def record(self, index: int, step: WorkflowStep, args: Any, version: str | None,
               outcome: Callable[[], tuple[str, Any, int | None]]) -> Row:
        """Claim the op pending, then record what `outcome()` returns: ("completed", result, ms) or
        ("failed", SkillError, ms). A retryable SkillError is noted on the pending op and raised."""
        with self.audit.begin(self.tenant):
            args = self.audit.as_stored(args)
            new = NewOp(op_id(self.run_id, index), self.run_id, index, step.skill, version, args,
                        canonical_hash(args), step.transient, idempotency_key(self.run_id, index), self.tenant)
            stored = self.audit.claim_op(new)
        if stored["status"] != "pending":
            return stored  # another worker recorded its outcome first
        try:
            status, value, ms = outcome()
        except SkillError as exc:  # retryable: the op stays pending for the redelivery
            with self.audit.begin(self.tenant):
                self.audit.note_error(self.tenant, self.run_id, index, exc.code, str(exc))
            raise
        with self.audit.begin(self.tenant):
            if status == "completed":
                # Hashed as stored, so that the replay, which reads it back, computes the same hash.
                value = self.audit.as_stored(value)
                row = self.audit.complete_op(self.tenant, self.run_id, index, value, canonical_hash(value), ms or 0)
            else:
                row = self.audit.fail_op(self.tenant, self.run_id, index, value.code, str(value), ms)
        metrics.add_metric(name="AuditOps", unit=MetricUnit.Count, value=1)
        logger.info("op recorded", op_index=index, skill=step.skill, status=row["status"],
                    error_code=row["error_code"], duration_ms=row["duration_ms"])
        return row

    def run_op(self, index: int, step: WorkflowStep) -> Row:
        """Resolve, execute and record one step (a failure before the skill runs is recorded as the op's)."""
        try:
            args = resolve(step.args, self.results())
        except UnresolvedReference as exc:
            unresolved = _input_error(exc)
            return self.record(index, step, step.args, None, lambda: ("failed", unresolved, None))
        try:
            skill = self.skills.get(step.skill)
        except SkillError as exc:  # the skill was removed since the run was accepted
            gone = exc
            return self.record(index, step, args, None, lambda: ("failed", gone, None))
        context = SkillContext(tenant_id=self.tenant, idempotency_key=idempotency_key(self.run_id, index),
                               workflow_run_id=self.run_id, op_index=index)

        def execute() -> tuple[str, Any, int | None]:
            started = time.perf_counter()
            try:
                result = skill.execute(args, context)
            except SkillError as exc:
                if exc.retryable:
                    raise
                return "failed", exc, _ms(started)
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - a skill's bug, or an input it did not foresee: see _crashed
                return "failed", _crashed(step.skill, index, exc), _ms(started)
            return "completed", result, _ms(started)

        return self.record(index, step, args, skill.version, execute)


def _crashed(skill: str, index: int, exc: Exception) -> SkillError:
    """The op's failure when its skill raised something other than a SkillError. Not retried: every redelivery
    would raise it again, and repeat whatever the skill did before it (its idempotency record is dropped when it
    raises), while the run stayed `running` until the queue dead-lettered it. Named by its type and where it was
    raised, never by its text, which may quote what the skill was given (a token in a header, say)."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ is not None else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where is not None else ""
    logger.error("skill raised an unexpected error; the op fails", skill=skill, op_index=index,
                 error_type=type(exc).__name__, raised_at=at.strip())
    return SkillError(f"{skill} failed unexpectedly ({type(exc).__name__}{at})", code="internal_error",
                      retryable=False)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _input_error(exc: UnresolvedReference) -> SkillError:
    return SkillError(str(exc), code=exc.code, retryable=False)


def run_workflow(message: WorkflowMessage, *, audit: AuditStore | None = None, skills: SkillSource | None = None,
                 queue: WorkflowQueue | None = None, time_left_ms: Callable[[], int] | None = None,
                 owner: str | None = None) -> dict[str, Any]:
    """Run (or resume) the message's workflow run: {"workflow_run_id", "status", ...}.

    RunNotStored when the tenant has no such run, RunBusy while another worker holds it, a retryable
    SkillError or DatabaseUnavailable when it must be tried again (the caller fails the SQS record).
    `time_left_ms` is the invocation's clock: before each op after the first it hands the run on to a new
    message when less is left than the op may take.
    """
    audit, skills, owner = audit_store(audit), skill_source(skills), owner or uuid4().hex
    tenant, run_id = message.tenant_id, message.workflow_run_id
    logger.set_correlation_id(message.correlation_id)
    logger.append_keys(workflow_run_id=run_id, tenant_id=tenant, segment=message.segment)
    with audit.begin(tenant):
        stored = audit.run(tenant, run_id)
        if stored is None:
            raise RunNotStored(f"workflow run {run_id} of tenant {tenant} is not stored")
        if stored["status"] in FINISHED:
            logger.info("workflow already finished", status=stored["status"])
            return {"workflow_run_id": run_id, "status": stored["status"], "error_code": stored["error_code"]}
        if not audit.take_lease(tenant, run_id, owner, DEFAULT_OP_BUDGET_S + LEASE_MARGIN_S):
            raise RunBusy(f"workflow run {run_id} is held by another worker")
        ops = {op["op_index"]: op for op in audit.ops(tenant, run_id)}
    run = _Run(message, audit, skills, owner, ops)
    try:
        try:
            definition = WorkflowDefinition.model_validate(stored["definition"])
        except ValidationError as exc:  # accepted under other bounds: every delivery would fail alike, until the DLQ
            logger.error("stored definition no longer validates; the run fails", errors=exc.error_count())
            return run.finish("failed", "invalid_definition",
                              f"the stored definition no longer validates: {exc.errors()[0]['msg']}"[:500])
        return _steps(run, definition, queue, time_left_ms)
    finally:
        try:
            with audit.begin(tenant):
                audit.release_lease(tenant, run_id, owner)  # a no-op once finish() released it
        except DatabaseUnavailable:
            logger.warning("lease not released; it expires on its own")


def _steps(run: _Run, definition: WorkflowDefinition, queue: WorkflowQueue | None,
           time_left_ms: Callable[[], int] | None) -> dict[str, Any]:
    ran = 0
    for index, step in enumerate(definition.steps):
        done = run.ops.get(index)
        if done is not None and done["status"] == "completed":
            continue
        if done is not None and done["status"] == "failed":  # recorded, but the run was not marked failed
            return run.finish("failed", done["error_code"], done["error_message"])
        budget = op_budget_s(_quiet_get(run.skills, step.skill))
        if ran and time_left_ms is not None and time_left_ms() < budget * 1000:
            return _continue(run, queue, index)
        with run.audit.begin(run.tenant):  # the lease covers this op's worst case
            if not run.audit.take_lease(run.tenant, run.run_id, run.owner, budget + LEASE_MARGIN_S):
                raise RunBusy(f"workflow run {run.run_id} lost its lease")
        op = run.ops[index] = run.run_op(index, step)
        ran += 1
        if op["status"] == "failed":
            return run.finish("failed", op["error_code"], f"op {index} ({step.skill}): {op['error_message']}")
    return run.finish("completed")


def _quiet_get(skills: SkillSource, name: str) -> Any:
    try:
        return skills.get(name)
    except SkillError:
        return None  # run_op records the unknown skill as the op's failure


def _continue(run: _Run, queue: WorkflowQueue | None, index: int) -> dict[str, Any]:
    nxt = run.message.model_copy(update={"segment": run.message.segment + 1})
    with run.audit.begin(run.tenant):  # released first: the next segment may start before this one returns
        run.audit.release_lease(run.tenant, run.run_id, run.owner)
    workflow_queue(queue).send(nxt)
    logger.info("workflow continues in a new message", next_op_index=index, next_segment=nxt.segment)
    return {"workflow_run_id": run.run_id, "status": "continued", "next_op_index": index, "segment": nxt.segment}
