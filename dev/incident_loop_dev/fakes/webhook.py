"""A fake webhook receiver: verifies Standard Webhooks signatures with the `standardwebhooks` library, answers
401 to a bad one, and applies each webhook-id once (a redelivery is acknowledged, not applied again).

    with FakeWebhookReceiver(secrets=["whsec_..."]) as hook:
        send to hook.url (allow-list 127.0.0.1); then hook.deliveries, hook.effects, hook.rejected

`effects` maps webhook-id -> payload for the messages applied. `rotate(secrets)` changes what it accepts
(key rotation: hold the old and the new secret, then the new one only). Without the library installed it
cannot check signatures: it then accepts every delivery and says so (`verifying` is False).
"""

from __future__ import annotations

from typing import Any

from incident_loop_dev.fakes.server import Call, FakeServer, Reply, reply_json

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError:  # the dev extra installs it; without it the receiver only counts
    Webhook = None  # type: ignore[assignment,misc]
    WebhookVerificationError = Exception  # type: ignore[assignment,misc]


class FakeWebhookReceiver(FakeServer):
    """Accepts signed POSTs on any path."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets: list[str] = list(secrets or [])
        self.verifying = Webhook is not None and bool(self.secrets)
        self.deliveries: list[Call] = []  # accepted (signature valid), including redeliveries
        self.effects: dict[str, Any] = {}  # webhook-id -> payload, applied once
        self.rejected: list[Call] = []  # bad or missing signature
        self.verified_with: list[int] = []  # per delivery: the index of the secret that verified it

    def rotate(self, secrets: list[str]) -> None:
        """Accept signatures of these secrets from now on."""
        with self.lock:
            self.secrets = list(secrets)
            self.verifying = Webhook is not None and bool(self.secrets)

    def handle(self, call: Call) -> Reply:
        if call.method != "POST":
            return reply_json(405, {"error": "method not allowed"})
        with self.lock:
            secrets = list(self.secrets)
        index = self._verify(call, secrets)
        if index is None:
            with self.lock:
                self.rejected.append(call)
            return reply_json(401, {"error": "invalid signature"})
        msg_id = call.headers.get("webhook-id", "")
        with self.lock:
            self.deliveries.append(call)
            self.verified_with.append(index)
            duplicate = msg_id in self.effects
            if not duplicate:
                self.effects[msg_id] = call.json()
        return reply_json(200, {"received": msg_id, "duplicate": duplicate})

    def _verify(self, call: Call, secrets: list[str]) -> int | None:
        if not (Webhook is not None and secrets):
            return -1
        for index, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(call.body, call.headers)
            except WebhookVerificationError:
                continue
            return index
        return None
