"""A fake Slack: chat.postMessage (bearer token checked, Slack's `{"ok": ...}` JSON) and an incoming webhook
(answers "ok"), both recording the messages they accept.

    with FakeSlack() as slack:
        settings: SLACK_BASE_URL=slack.base_url, the token "xoxb-fake" behind SLACK_TOKEN_PARAMETER
        or send to slack.webhook_url; then slack.messages
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from incident_loop_dev.fakes.server import Call, FakeServer, Reply, reply_json

MISSING_CHANNEL = "C_MISSING"  # chat.postMessage answers channel_not_found for it


@dataclass(frozen=True)
class Message:
    via: str  # "api" or "webhook"
    channel: str | None
    text: str | None
    at: float  # time.monotonic() when accepted


class FakeSlack(FakeServer):
    """Slack's Web API (under /api) and one incoming webhook (webhook_path)."""

    def __init__(self, token: str = "xoxb-fake", webhook_path: str = "/services/T000FAKE/B000FAKE/fakesecret") -> None:
        super().__init__()
        self.token, self.webhook_path = token, webhook_path
        self.messages: list[Message] = []
        self._ts = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What SLACK_BASE_URL should be."""
        return f"{self.url}/api"

    @property
    def webhook_url(self) -> str:
        """The incoming webhook's URL."""
        return f"{self.url}{self.webhook_path}"

    def handle(self, call: Call) -> Reply:
        if call.method != "POST":
            return 405, {"content-type": "text/plain"}, b"method_not_allowed"
        if call.path == "/api/chat.postMessage":
            return self._post_message(call)
        if call.path == self.webhook_path:
            return self._webhook(call)
        return 404, {"content-type": "text/plain"}, b"no_service"

    def _post_message(self, call: Call) -> Reply:
        auth = call.headers.get("authorization", "")
        if not auth:
            return reply_json(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return reply_json(200, {"ok": False, "error": "invalid_auth"})
        body = _json(call)
        if body is None:
            return reply_json(200, {"ok": False, "error": "invalid_json"})
        channel = body.get("channel")
        if not channel or channel == MISSING_CHANNEL:
            return reply_json(200, {"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return reply_json(200, {"ok": False, "error": "no_text"})
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        with self.lock:
            self.messages.append(Message("api", channel, body.get("text"), call.at))
        return reply_json(200, {"ok": True, "channel": channel, "ts": ts,
                                "message": {"type": "message", "text": body.get("text"), "ts": ts}})

    def _webhook(self, call: Call) -> Reply:
        body = _json(call)
        if body is None or not (body.get("text") or body.get("blocks")):
            return 400, {"content-type": "text/plain"}, b"invalid_payload"
        with self.lock:
            self.messages.append(Message("webhook", None, body.get("text"), call.at))
        return 200, {"content-type": "text/plain"}, b"ok"


def _json(call: Call) -> dict[str, Any] | None:
    try:
        body = call.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
