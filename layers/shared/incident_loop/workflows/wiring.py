"""How the workflows meet PostgreSQL, SQS and the skills unless they are given fakes (the unit tests)."""

from __future__ import annotations

from incident_loop.stores.audit import PostgresAudit
from incident_loop.stores.workflow_queue import SqsWorkflowQueue
from incident_loop.workflows.ports import AuditStore, SkillSource, WorkflowQueue


def audit_store(audit: AuditStore | None = None) -> AuditStore:
    """`audit` itself, or m11_audit on the container's connection."""
    return audit if audit is not None else PostgresAudit()


def workflow_queue(queue: WorkflowQueue | None = None) -> WorkflowQueue:
    """`queue` itself, or the workflow queue on SQS."""
    return queue if queue is not None else SqsWorkflowQueue()


def skill_source(skills: SkillSource | None = None) -> SkillSource:
    """`skills` itself, or the container's skill registry (imported here: only callers that need skills load it)."""
    if skills is not None:
        return skills
    from incident_loop.skills import registry

    return registry  # type: ignore[return-value]  # the module has get() and names()
