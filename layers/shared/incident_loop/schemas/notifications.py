"""Where the loop announces a new human checkpoint or a policy that became active: a tenant's targets.

A tenant names, per event, a Slack route (a channel for chat.postMessage with the deployment's bot
token, or the SSM parameter / Secrets Manager secret holding an incoming-webhook URL) and a webhook
endpoint signed per Standard Webhooks with the secret(s) held in a parameter. Secrets are referenced,
never stored here, and only the tenant's own: incident-loop/<stage>/tenants/<tenant_id>/... (SSM or
Secrets Manager; skills.secrets.tenant_owns).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from incident_loop.schemas.loop.enums import NotificationEvent

__all__ = ["NotificationEvent", "NotificationSetting", "NotificationSettings", "NotificationTargets", "SlackTarget",
           "WebhookTarget"]

PARAMETER = r"^[A-Za-z0-9_.:/+=@-]{1,2048}$"  # an SSM parameter name or a Secrets Manager ARN / name


class SlackTarget(BaseModel):
    """A Slack route: a channel (chat.postMessage) or a parameter holding an incoming-webhook URL."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")
    webhook_parameter: str | None = Field(default=None, pattern=PARAMETER)

    @model_validator(mode="after")
    def _one_route(self) -> SlackTarget:
        if (self.channel is None) == (self.webhook_parameter is None):
            raise ValueError("give exactly one of channel or webhook_parameter")
        return self


class WebhookTarget(BaseModel):
    """A Standard Webhooks endpoint and the parameter holding its `whsec_` secret(s), space-separated."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s]+$")
    secret_parameter: str = Field(pattern=PARAMETER)


class NotificationTargets(BaseModel):
    """One event's targets for one tenant; at least one."""

    model_config = ConfigDict(extra="forbid")

    slack: SlackTarget | None = None
    webhook: WebhookTarget | None = None

    @model_validator(mode="after")
    def _something(self) -> NotificationTargets:
        if self.slack is None and self.webhook is None:
            raise ValueError("give a slack or a webhook target (DELETE the event's targets to send nothing)")
        return self

    def secret_references(self) -> list[str]:
        """Every secret this configuration names."""
        refs = [self.webhook.secret_parameter] if self.webhook else []
        if self.slack and self.slack.webhook_parameter:
            refs.append(self.slack.webhook_parameter)
        return refs


class NotificationSetting(BaseModel):
    """One event's targets as stored."""

    event: NotificationEvent
    targets: NotificationTargets
    updated_by: str | None = None
    updated_at: datetime | None = None


class NotificationSettings(BaseModel):
    """Every event the tenant has targets for."""

    notifications: list[NotificationSetting]
