"""All three fake receivers at once, with the settings and secrets that point the skills at them.

    with fake_services(ssm_client=boto3.client("ssm", endpoint_url=moto)) as fakes:
        os.environ.update(fakes.env)             # SLACK_BASE_URL, VOYAGE_BASE_URL, WEBHOOK_ALLOW_HOSTS, ...
        ...                                      # webhook_send args: url=fakes.webhook.url,
                                                 #   secret_parameter=fakes.webhook_secret_parameter
        fakes.counts()                           # what each receiver got

`incident-loop workflow run` starts these when no external URLs are configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from incident_loop.skills.signing import new_secret
from incident_loop_dev.fakes.aws import put_parameter
from incident_loop_dev.fakes.slack import FakeSlack
from incident_loop_dev.fakes.voyage import FakeVoyage
from incident_loop_dev.fakes.webhook import FakeWebhookReceiver

# The channels the local tenant is granted for the deployment's Slack bot (the examples' and the tests').
CHANNELS = ("#incidents", "#agent-oncall")


@dataclass
class FakeServices:
    slack: FakeSlack
    voyage: FakeVoyage
    webhook: FakeWebhookReceiver
    webhook_secret: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def webhook_secret_parameter(self) -> str:
        return f"{self.prefix}/webhook-secrets"

    def counts(self) -> dict[str, Any]:
        """What the receivers saw: requests, and the effects applied once."""
        return {"slack_messages": len(self.slack.messages), "voyage_requests": self.voyage.requests,
                "voyage_inputs": self.voyage.inputs, "webhook_deliveries": len(self.webhook.deliveries),
                "webhook_effects": len(self.webhook.effects), "webhook_rejected": len(self.webhook.rejected)}


@contextmanager
def fake_services(ssm_client: Any | None = None, prefix: str = "/incident-loop/local",
                  grants_parameter: str | None = None) -> Iterator[FakeServices]:
    """Start the fakes; with an SSM client, store the Slack token, Voyage key and webhook secret there (and the
    tenant's granted Slack channels at `grants_parameter`, slack_send.GRANTS_PARAMETER)."""
    secret = new_secret()
    with ExitStack() as stack:
        slack = stack.enter_context(FakeSlack())
        voyage = stack.enter_context(FakeVoyage())
        webhook = stack.enter_context(FakeWebhookReceiver(secrets=[secret]))
        fakes = FakeServices(slack, voyage, webhook, secret, prefix)
        fakes.env = {"SLACK_BASE_URL": slack.base_url, "VOYAGE_BASE_URL": voyage.url,
                     "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                     "SLACK_TOKEN_PARAMETER": f"{prefix}/slack-token",
                     "VOYAGE_API_KEY_PARAMETER": f"{prefix}/voyage-key"}
        if ssm_client is not None:
            put_parameter(ssm_client, f"{prefix}/slack-token", slack.token)
            put_parameter(ssm_client, f"{prefix}/voyage-key", voyage.api_key)
            put_parameter(ssm_client, fakes.webhook_secret_parameter, secret)
            if grants_parameter:  # the channels the deployment's bot may post to for the tenant
                put_parameter(ssm_client, grants_parameter, " ".join(CHANNELS))
        yield fakes
