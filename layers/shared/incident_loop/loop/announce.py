"""The loop announces through the skills: a new human checkpoint, a policy that became active and an active policy
that stopped acting (Slack and/or a signed webhook), to the targets the tenant configured; nothing when it
configured none.

An announcement is a workflow run per target (a slack_send step, a webhook_send step), so it is audited op by
op and can be replayed like any run, and one target that fails (a Slack channel no longer granted, a webhook
receiver down past its retries) does not hold back the other. A run's id is derived from the tenant, the event,
what it announces and the target: however often a stage or a request is retried, the run is written once, and
its step's effect happens once (the skills' idempotency keys derive from the run id and the step).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from incident_loop.observability import logger
from incident_loop.schemas.loop.base import utc_now
from incident_loop.schemas.loop.enums import NotificationEvent
from incident_loop.stores.ports import UnitOfWork

if TYPE_CHECKING:  # loaded when a tenant has targets, not at every stage function's init
    from incident_loop.schemas.loop.policy import PolicyRule
    from incident_loop.schemas.notifications import NotificationTargets
    from incident_loop.schemas.workflows import WorkflowDefinition

_NAMESPACE = uuid.UUID("5b0c4c2e-9f59-4a4e-8a43-6f1d7c2b8e11")
# Standard Webhooks event types (dotted, as the spec's examples write them)
WEBHOOK_TYPES = {NotificationEvent.CHECKPOINT_CREATED: "checkpoint.created",
                 NotificationEvent.POLICY_ACTIVATED: "policy.activated",
                 NotificationEvent.POLICY_DEMOTED: "policy.demoted"}


def announcement_id(tenant_id: str, event: NotificationEvent, subject_id: str, target: str) -> str:
    """The run id of one announcement to one kind of target: the same for every retry of what announces it."""
    return "wf_" + uuid.uuid5(_NAMESPACE, f"{tenant_id}\x1f{event.value}\x1f{subject_id}\x1f{target}").hex


def literal(value: Any) -> Any:
    """The value with every `${` escaped, so text from the loop is never read as a step reference."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {key: literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [literal(item) for item in value]
    return value


def definitions(event: NotificationEvent, targets: NotificationTargets, text: str, subject_id: str,
                occurred_at: str, data: dict[str, Any]) -> dict[str, WorkflowDefinition]:
    """The announcement's runs by kind of target ("slack", "webhook"): a Slack message, a signed webhook, each a
    run of one step."""
    from incident_loop.schemas.workflows import WorkflowDefinition, WorkflowStep

    name = f"{event.value} {subject_id}"
    args: dict[str, dict[str, Any]] = {}
    if targets.slack is not None:
        args["slack"] = {"text": text, **targets.slack.model_dump(exclude_none=True)}
    if targets.webhook is not None:
        payload = {"type": WEBHOOK_TYPES[event], "timestamp": occurred_at, "data": {"id": subject_id, **data}}
        args["webhook"] = {"url": targets.webhook.url, "secret_parameter": targets.webhook.secret_parameter,
                           "payload": payload}
    return {target: WorkflowDefinition(name=f"{name} {target}",
                                       steps=[WorkflowStep(skill=f"{target}_send", args=literal(found))])
            for target, found in args.items()}


def announce(uow: UnitOfWork, tenant_id: str, event: NotificationEvent, subject_id: str, *, text: str,
             occurred_at: str, data: dict[str, Any]) -> list[str]:
    """Queue the announcement's runs in the caller's transaction, one per target; their run ids (none when the
    tenant has no targets)."""
    targets = uow.notifications.targets(tenant_id, event)
    if targets is None:
        return []
    run_ids = []
    for target, steps in definitions(event, targets, text, subject_id, occurred_at, data).items():
        run_id = announcement_id(tenant_id, event, subject_id, target)
        uow.notifications.submit(run_id, tenant_id, steps.name or event.value, steps.model_dump(mode="json"))
        run_ids.append(run_id)
    logger.info("announcement queued", event=event.value, subject_id=subject_id, workflow_run_ids=run_ids)
    return run_ids


def announce_demotion(uow: UnitOfWork, tenant_id: str, policy: PolicyRule, activated_at: datetime | None,
                      reason: str, by: str | None = None) -> None:
    """A signed webhook (and Slack, if configured) when an ACTIVE policy stops acting: once per activation ended."""
    when = utc_now().isoformat()
    announce(uow, tenant_id, NotificationEvent.POLICY_DEMOTED,
             f"{policy.policy_id}@{activated_at.isoformat() if activated_at else when}",
             text=f"Policy {policy.policy_id} no longer acts ({policy.mode.value}): {reason}", occurred_at=when,
             data={"policy_id": policy.policy_id, "mode": policy.mode.value, "reason": reason,
                   "source_pattern_id": policy.source_pattern_id, "by": by})
