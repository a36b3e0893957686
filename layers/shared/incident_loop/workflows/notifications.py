"""A tenant's notification targets through the API: read, set (checked against the skills), remove.

The loop announces to them (incident_loop.loop.announce); each announcement is a workflow run per target, so
the targets are checked here, against the skills that will run them.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from incident_loop.loop.announce import definitions
from incident_loop.loop.errors import NotFound
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger
from incident_loop.schemas.notifications import NotificationEvent, NotificationSettings, NotificationTargets
from incident_loop.stores.ports import UnitOfWork
from incident_loop.workflows.definitions import check_definition
from incident_loop.workflows.errors import InvalidDefinition, TargetsUnverifiable
from incident_loop.workflows.wiring import skill_source


def check_targets(tenant_id: str, event: NotificationEvent, targets: NotificationTargets) -> None:
    """InvalidDefinition (422) unless every secret is the tenant's own and the skills accept the targets."""
    from incident_loop.skills.secrets import tenant_owns

    foreign = [ref for ref in targets.secret_references() if not tenant_owns(ref, tenant_id)]
    if foreign:
        reason = (f"a secret reference must name one of the tenant's own secrets: the SSM parameter "
                  f"/incident-loop/<stage>/tenants/{tenant_id}/..., or the Secrets Manager secret "
                  f"secretsmanager:incident-loop/<stage>/tenants/{tenant_id}/... (or its ARN): {', '.join(foreign)}")
        raise InvalidDefinition([{"field": "targets", "reason": reason}])
    errors = []  # every target's, each field named by its target (an announcement is a run per target)
    for target, sample in definitions(event, targets, "sample", "sample", "1970-01-01T00:00:00Z", {}).items():
        try:
            check_definition(sample, skill_source(None))
        except InvalidDefinition as exc:
            errors += [{**error, "field": f"{target}: {error['field']}"} for error in exc.errors]
    if errors:
        raise InvalidDefinition(errors)
    if targets.webhook is not None:
        _check_address(targets.webhook.url)
    if targets.slack is not None and targets.slack.channel is not None:
        _check_granted(tenant_id, targets.slack.channel)


def _check_granted(tenant_id: str, channel: str) -> None:
    """A channel the deployment's bot may not post to for the tenant is refused now (422), not at every announcement
    (whose Slack run would fail); TargetsUnverifiable (503) when the grants cannot be read now."""
    from incident_loop.settings import get_settings
    from incident_loop.skills.errors import SkillError, SkillInputError
    from incident_loop.skills.secrets import fetch
    from incident_loop.skills.slack_send import check_granted

    try:
        check_granted(channel, tenant_id, get_settings().stage, fetch)
    except SkillInputError as exc:
        raise InvalidDefinition([{"field": "slack.channel", "reason": str(exc)}]) from exc
    except SkillError as exc:
        raise TargetsUnverifiable(str(exc)) from exc


def _check_address(url: str) -> None:
    """A webhook URL naming a private, loopback or link-local address is refused now rather than at each send.

    Host names are checked when a message is sent (what they resolve to may change); an address is checked here.
    """
    from incident_loop.settings import get_settings
    from incident_loop.skills import ssrf
    from incident_loop.skills.errors import SkillError

    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    try:
        ssrf.check(url, get_settings().webhook_allow_hosts)
    except SkillError as exc:
        raise InvalidDefinition([{"field": "webhook.url", "reason": f"webhook_send would refuse it: {exc}"}]) from exc


def set_targets(tenant_id: str, event: NotificationEvent, targets: NotificationTargets, by: str | None, *,
                uow: UnitOfWork | None = None) -> NotificationSettings:
    """Announce `event` to these targets from now on; the tenant's settings after the change."""
    check_targets(tenant_id, event, targets)
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        uow.notifications.put(tenant_id, event, targets, by)
        settings = uow.notifications.all(tenant_id)
    logger.info("notification targets set", event=event.value, by=by,
                slack=targets.slack is not None, webhook=targets.webhook is not None)
    return NotificationSettings(notifications=settings)


def targets_of(tenant_id: str, *, uow: UnitOfWork | None = None) -> NotificationSettings:
    """Every event the tenant announces, with its targets."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        return NotificationSettings(notifications=uow.notifications.all(tenant_id))


def remove_targets(tenant_id: str, event: NotificationEvent, *, uow: UnitOfWork | None = None) -> None:
    """Stop announcing `event`; NotFound (404) when it had no targets."""
    uow = unit_of_work(uow)
    with uow.begin(tenant_id):
        if not uow.notifications.remove(tenant_id, event):
            raise NotFound(f"no notification targets for {event.value}")
    logger.info("notification targets removed", event=event.value)
