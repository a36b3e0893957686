"""The loop's announcements on in-memory stores: what a checkpoint and an activation queue, and what they do not."""

from __future__ import annotations

import pytest
from fakes.driver import MemoryLoop

from incident_loop.loop.announce import announcement_id, definitions, literal
from incident_loop.loop.policies import confirm_policy
from incident_loop.schemas.loop.requests import PolicyFeedback
from incident_loop.schemas.notifications import NotificationEvent, NotificationTargets
from incident_loop.schemas.workflows import WorkflowDefinition

TARGETS = NotificationTargets.model_validate({
    "slack": {"channel": "#oncall"},
    "webhook": {"url": "https://hooks.example.com/loop", "secret_parameter": "/il/tenants/tenant-a/hook"},
})
CREATED = NotificationEvent.CHECKPOINT_CREATED


def configure(loop: MemoryLoop, event: NotificationEvent, targets: NotificationTargets = TARGETS) -> None:
    loop.uow.notifications.configured[(loop.tenant, event.value)] = targets


def test_a_new_checkpoint_queues_a_run_for_slack_and_one_for_the_signed_webhook(loop: MemoryLoop) -> None:
    """One run per target: a Slack step that fails (a channel no longer granted) does not hold back the webhook."""
    configure(loop, CREATED)
    incident = loop.report(1)
    loop.drain()
    [checkpoint_id] = loop.status(incident).pending_checkpoints
    assert sorted(loop.uow.notifications.queued) == sorted(
        announcement_id(loop.tenant, CREATED, checkpoint_id, target) for target in ("slack", "webhook"))
    slack, webhook = (WorkflowDefinition.model_validate(
        loop.uow.notifications.runs[announcement_id(loop.tenant, CREATED, checkpoint_id, target)]["definition"])
        for target in ("slack", "webhook"))
    assert [step.skill for step in slack.steps] == ["slack_send"]
    assert [step.skill for step in webhook.steps] == ["webhook_send"]
    assert slack.steps[0].args["channel"] == "#oncall" and checkpoint_id in slack.steps[0].args["text"]
    payload = webhook.steps[0].args["payload"]
    assert payload["type"] == "checkpoint.created" and payload["data"]["incident_id"] == incident
    assert webhook.steps[0].args["secret_parameter"] == "/il/tenants/tenant-a/hook"
    assert (slack.name, webhook.name) == (f"checkpoint_created {checkpoint_id} slack",
                                          f"checkpoint_created {checkpoint_id} webhook")


def test_without_targets_a_checkpoint_queues_nothing(loop: MemoryLoop) -> None:
    configure(loop, NotificationEvent.POLICY_ACTIVATED)  # another event's targets
    incident = loop.report(1)
    loop.drain()
    assert loop.status(incident).pending_checkpoints
    assert loop.uow.notifications.queued == [] and loop.uow.notifications.runs == {}


def test_an_auto_applied_recovery_opens_no_checkpoint_and_announces_nothing(loop: MemoryLoop) -> None:
    configure(loop, CREATED)
    for n in (1, 2, 3):
        incident = loop.report(n)
        loop.drain()
        if loop.status(incident).pending_checkpoints:
            loop.resolve(incident)
            loop.drain()
    assert loop.status(incident).recovery_suggestion.auto_applicable  # type: ignore[union-attr]
    assert len(loop.uow.notifications.runs) == 4  # the first two waited for a person (Slack and webhook each)


def test_a_policy_is_announced_when_it_becomes_active_and_not_on_later_confirmations(loop: MemoryLoop) -> None:
    incident = loop.report(1)
    loop.drain()
    loop.resolve(incident)
    loop.drain()
    policy = loop.status(incident).policy_rule
    assert policy is not None
    configure(loop, NotificationEvent.POLICY_ACTIVATED, NotificationTargets.model_validate(
        {"webhook": {"url": "https://hooks.example.com/p", "secret_parameter": "/il/tenants/tenant-a/p"}}))
    answers = [confirm_policy(loop.tenant, policy.policy_id, PolicyFeedback(by="oncall"), uow=loop.uow)
               for _ in range(3)]
    assert [a["activated"] for a in answers] == [True, False, False]
    [run] = loop.uow.notifications.runs.values()
    [step] = run["definition"]["steps"]
    assert step["skill"] == "webhook_send" and step["args"]["payload"]["data"]["policy_id"] == policy.policy_id


def test_text_from_the_loop_is_never_read_as_a_step_reference() -> None:
    runs = definitions(CREATED, TARGETS, "see ${steps.0.result}", "chk_1", "2026-01-01T00:00:00Z",
                       {"description": "${steps.0.result.ts}"})
    assert runs["slack"].steps[0].args["text"] == "see $${steps.0.result}"
    assert runs["webhook"].steps[0].args["payload"]["data"]["description"] == "$${steps.0.result.ts}"
    assert literal({"a": ["${x}", 1]}) == {"a": ["$${x}", 1]}


@pytest.mark.parametrize("subject", ["chk_1", "pol_1@2026-01-01T00:00:00+00:00"])
def test_an_announcement_id_is_the_same_for_every_retry_and_differs_by_tenant_and_target(subject: str) -> None:
    assert announcement_id("a", CREATED, subject, "slack") == announcement_id("a", CREATED, subject, "slack")
    assert announcement_id("a", CREATED, subject, "slack") != announcement_id("b", CREATED, subject, "slack")
    assert announcement_id("a", CREATED, subject, "slack") != announcement_id("a", CREATED, subject, "webhook")


def test_targets_the_skills_refuse_are_refused_with_every_targets_reasons_named_by_target(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each target is a run of its own: the 422 lists what each run's skill refuses, the field named by its target
    (steps.0 alone would not say which)."""
    from incident_loop.workflows import notifications
    from incident_loop.workflows.errors import InvalidDefinition

    def refuse(definition: WorkflowDefinition, skills: object) -> None:
        raise InvalidDefinition([{"field": "steps.0.args", "reason": f"{definition.steps[0].skill} refuses it"}])

    monkeypatch.setattr(notifications, "check_definition", refuse)
    monkeypatch.setattr(notifications, "_check_granted", lambda tenant_id, channel: None)
    monkeypatch.setattr(notifications, "_check_address", lambda url: None)
    secret = "/incident-loop/local/tenants/tenant-a/hook"
    with pytest.raises(InvalidDefinition) as refused:
        notifications.check_targets("tenant-a", CREATED, NotificationTargets.model_validate({
            "slack": {"channel": "#oncall"},
            "webhook": {"url": "https://hooks.example.com/loop", "secret_parameter": secret}}))
    assert refused.value.errors == [{"field": "slack: steps.0.args", "reason": "slack_send refuses it"},
                                    {"field": "webhook: steps.0.args", "reason": "webhook_send refuses it"}]
