"""The workflow API's domain: accept a run (store it, queue it) and show a run with its ops."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4, uuid5

from incident_loop.loop.errors import Conflict, NotFound
from incident_loop.observability import logger
from incident_loop.schemas.workflows import (
    OpView,
    WorkflowAccepted,
    WorkflowDefinition,
    WorkflowMessage,
    WorkflowRunView,
)
from incident_loop.stores.workflow_queue import send_after_commit
from incident_loop.workflows.definitions import check_definition
from incident_loop.workflows.ports import AuditStore, SkillSource, WorkflowQueue
from incident_loop.workflows.wiring import audit_store, skill_source, workflow_queue

# GET /workflows/{id} inlines its ops' args and results up to this many bytes: a Lambda answer is at most 6 MB
# (6,291,456 bytes), and the run's other fields and every op's metadata (50 steps at most) take well under 1 MiB.
# GET /workflows/{id}/ops/{op_index} shows one op within the same budget: voyage_embed's result (at most 4 MiB of
# numbers) and a step's args as defined (64 KiB) fit; args resolved from earlier results may not (then omitted).
VIEW_BUDGET_BYTES = 5 * 1024 * 1024
# The namespace of the run ids derived from a client's Idempotency-Key (uuid5 of the tenant and the key).
IDEMPOTENT_RUNS = UUID("6f1d2c3b-8a4e-5b7c-9d0e-1f2a3b4c5d6e")


def new_run_id(tenant_id: str | None = None, idempotency_key: str | None = None) -> str:
    """A workflow run's id: `wf_` and 32 hex digits; the same for every request of one tenant with one key."""
    if idempotency_key is None:
        return f"wf_{uuid4().hex}"
    return f"wf_{uuid5(IDEMPOTENT_RUNS, chr(31).join((str(tenant_id), idempotency_key))).hex}"


def submit_workflow(definition: WorkflowDefinition, tenant_id: str, *, idempotency_key: str | None = None,
                    audit: AuditStore | None = None, queue: WorkflowQueue | None = None,
                    skills: SkillSource | None = None) -> WorkflowAccepted:
    """Check the definition against the skills (InvalidDefinition), store the run, hand it to the runner.

    With an idempotency key, a request repeated (a client's retry after a timeout) answers with the run the
    first one made, as it is now, and makes no second run; the same key with another definition is a
    Conflict (409).

    The run is committed before the message is sent: the runner never gets a message for a run it cannot
    read. The commit is the acceptance: if the queue then refuses the message (QueueUnavailable), the run
    stays `queued` and the relay (workflows.relay) sends it within minutes, so the answer is still 202. A 503
    would have the client submit again, and the relay would start the first run as well.
    """
    check_definition(definition, skill_source(skills))
    audit = audit_store(audit)
    run_id = new_run_id(tenant_id, idempotency_key)
    stored = definition.model_dump(mode="json")
    with audit.begin(tenant_id):
        if not audit.create_run(run_id, tenant_id, definition.name, stored):
            earlier = audit.run(tenant_id, run_id)
            if earlier is None or not audit.same_definition(tenant_id, run_id, stored):
                raise Conflict("this Idempotency-Key was used with another workflow definition")
            if earlier["status"] != "queued":  # started already: its message arrived; nothing to send
                return WorkflowAccepted(workflow_run_id=run_id, status=earlier["status"],
                                        status_url=f"/workflows/{run_id}")
    message = WorkflowMessage(workflow_run_id=run_id, tenant_id=tenant_id, correlation_id=run_id)
    sent = send_after_commit(workflow_queue(queue), message)
    logger.info("workflow accepted", workflow_run_id=run_id, steps=len(definition.steps), queued=sent)
    return WorkflowAccepted(workflow_run_id=run_id, status="queued", status_url=f"/workflows/{run_id}")


def workflow_view(tenant_id: str, run_id: str, *, audit: AuditStore | None = None,
                  budget: int = VIEW_BUDGET_BYTES) -> WorkflowRunView:
    """The run's status and its ops, their args and results while `budget` holds them (OpView.omitted); NotFound
    (404) when the tenant has no such run."""
    audit = audit_store(audit)
    with audit.begin(tenant_id):
        run = audit.run(tenant_id, run_id)
        ops = audit.ops_within(tenant_id, run_id, budget) if run else []
        summary = audit.summary(tenant_id, run_id) if run else None
    if run is None:
        raise NotFound(f"workflow run {run_id} not found")
    return WorkflowRunView(
        workflow_run_id=run["id"], name=run["name"], status=run["status"], error_code=run["error_code"],
        error_message=run["error_message"], steps=len(run["definition"].get("steps", [])),
        created_at=run["created_at"], updated_at=run["updated_at"], completed_at=run["completed_at"],
        total_duration_ms=(summary or {}).get("total_duration_ms") or 0, ops=_within(ops, budget))


def _within(ops: list[dict[str, Any]], budget: int) -> list[OpView]:
    """The ops, args and results left out from the first whose would take the answer past `budget` bytes as Lambda
    sends it: written as JSON (non-ASCII escaped) in a body that is itself JSON-escaped inside Lambda's answer.
    The store measured them as stored (a lower bound): what it read is measured again here."""
    views, spent = [], 0
    for op in ops:
        if not op.get("omitted") and spent <= budget:
            spent += len(json.dumps(json.dumps([op["args"], op["result"]], separators=(",", ":"))))
        if op.get("omitted") or spent > budget:  # and every later op's
            op = {**op, "args": None, "result": None, "omitted": True}
        views.append(OpView.model_validate(op))
    return views


def op_view(tenant_id: str, run_id: str, op_index: int, *, audit: AuditStore | None = None,
            budget: int = VIEW_BUDGET_BYTES) -> OpView:
    """One op of the run, whole unless its args and result would take the answer past `budget` (then `omitted`, as
    in the run's view); NotFound (404) when the tenant has no such run or the run no such op."""
    audit = audit_store(audit)
    with audit.begin(tenant_id):
        op = audit.op(tenant_id, run_id, op_index)
    if op is None:
        raise NotFound(f"workflow run {run_id} has no op {op_index}")
    return _within([op], budget)[0]  # args resolved from earlier results may be larger than any step's own
