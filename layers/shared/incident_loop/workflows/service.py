"""The workflow API's domain: accept a run (store it, queue it) and show a run with its ops."""

from __future__ import annotations

from uuid import uuid4

from incident_loop.loop.errors import NotFound
from incident_loop.observability import logger
from incident_loop.schemas.workflows import (
    OpView,
    WorkflowAccepted,
    WorkflowDefinition,
    WorkflowMessage,
    WorkflowRunView,
)
from incident_loop.stores.queues import QueueUnavailable
from incident_loop.workflows.definitions import check_definition
from incident_loop.workflows.ports import AuditStore, SkillSource, WorkflowQueue
from incident_loop.workflows.wiring import audit_store, skill_source, workflow_queue


def new_run_id() -> str:
    """A workflow run's id: `wf_` and 32 hex digits."""
    return f"wf_{uuid4().hex}"


def submit_workflow(definition: WorkflowDefinition, tenant_id: str, *, audit: AuditStore | None = None,
                    queue: WorkflowQueue | None = None, skills: SkillSource | None = None) -> WorkflowAccepted:
    """Check the definition against the skills (InvalidDefinition), store the run, hand it to the runner.

    The run is committed before the message is sent: the runner never gets a message for a run it cannot
    read. The commit is the acceptance: if the queue then refuses the message (QueueUnavailable), the run
    stays `queued` and the relay (workflows.relay) sends it within minutes, so the answer is still 202. A 503
    would have the client submit again, and the relay would start the first run as well.
    """
    check_definition(definition, skill_source(skills))
    audit = audit_store(audit)
    run_id = new_run_id()
    with audit.begin(tenant_id):
        audit.create_run(run_id, tenant_id, definition.name, definition.model_dump(mode="json"))
    try:
        workflow_queue(queue).send(WorkflowMessage(workflow_run_id=run_id, tenant_id=tenant_id,
                                                   correlation_id=run_id))
    except QueueUnavailable:
        logger.warning("workflow accepted; its message is left to the relay", workflow_run_id=run_id,
                       exc_info=True)
    else:
        logger.info("workflow accepted", workflow_run_id=run_id, steps=len(definition.steps))
    return WorkflowAccepted(workflow_run_id=run_id, status="queued", status_url=f"/workflows/{run_id}")


def workflow_view(tenant_id: str, run_id: str, *, audit: AuditStore | None = None) -> WorkflowRunView:
    """The run's status and its ops; NotFound (404) when the tenant has no such run."""
    audit = audit_store(audit)
    with audit.begin(tenant_id):
        run = audit.run(tenant_id, run_id)
        ops = audit.ops(tenant_id, run_id) if run else []
        summary = audit.summary(tenant_id, run_id) if run else None
    if run is None:
        raise NotFound(f"workflow run {run_id} not found")
    return WorkflowRunView(
        workflow_run_id=run["id"], name=run["name"], status=run["status"], error_code=run["error_code"],
        error_message=run["error_message"], steps=len(run["definition"].get("steps", [])),
        created_at=run["created_at"], updated_at=run["updated_at"], completed_at=run["completed_at"],
        total_duration_ms=(summary or {}).get("total_duration_ms") or 0,
        ops=[OpView.model_validate(op) for op in ops])
