"""slack_send: a message to Slack, by incoming webhook or by chat.postMessage with a bot token.

    {"channel": "C0123", "text": "checkpoint waiting"}                    chat.postMessage; the token from
                                                                          token_parameter or SLACK_TOKEN_PARAMETER
    {"webhook_parameter": "/incident-loop/slack/tenant-a", "text": "..."}  incoming webhook, URL from SSM/Secrets
    {"webhook_url": "https://hooks.slack.com/services/...", "text": "..."}  (local runs: the URL is audited)

At most one message per second per channel, across containers (pacing.py). A 429 is back-pressure: its
Retry-After sets the wait before the retry (and, being a 429, it counts as a failure on the `slack` breaker,
as seed 004 classes it). An incoming-webhook URL passes the same SSRF guard as webhook_send.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import incident_loop.skills.pacing as pacing
import incident_loop.skills.ssrf as ssrf
from incident_loop.observability import logger
from incident_loop.skills.base import ExternalSkill, SkillContext
from incident_loop.skills.errors import ExternalError, SkillError, SkillInputError
from incident_loop.skills.hashing import canonical_json
from incident_loop.skills.kvtable import KvUnavailable
from incident_loop.skills.transport import HttpRequest

# The channels the deployment's bot may post to for a tenant (check_granted): an SSM parameter an operator keeps,
# outside the tenant's own secrets (which a tenant's calls may name, and whose values it may supply).
GRANTS_PARAMETER = "/incident-loop/{stage}/slack-grants/{tenant}"
_PATH_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # a tenant id an SSM parameter name can hold as it is
INTERVAL_S = 1.0  # Slack's documented limit for posting to one channel: about one message per second
# chat.postMessage answers 200 with {"ok": false, "error": ...}; these errors are Slack's own trouble.
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})


class SlackInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=40_000)
    channel: str | None = Field(default=None, min_length=1, max_length=255)
    blocks: list[dict[str, Any]] | None = Field(default=None, max_length=50)
    webhook_url: str | None = Field(default=None, max_length=2048)
    webhook_parameter: str | None = None
    token_parameter: str | None = None

    @model_validator(mode="after")
    def _one_route(self) -> SlackInput:
        if self.webhook_url and self.webhook_parameter:
            raise ValueError("give webhook_url or webhook_parameter, not both")
        if not (self.webhook_url or self.webhook_parameter) and not self.channel:
            raise ValueError("chat.postMessage needs a channel (or give an incoming webhook)")
        return self


class SlackOutput(BaseModel):
    via: Literal["api", "webhook"]
    channel: str | None
    ts: str | None  # the message's timestamp (chat.postMessage only)
    delivered: bool = True


def check_granted(channel: str, tenant_id: str, stage: str | None, read: Callable[[str], str]) -> None:
    """The deployment's bot is in every tenant's channels: it posts for a tenant only to the channels an operator
    granted it, listed (comma- or space-separated channel ids or #names, compared without case) in GRANTS_PARAMETER.
    SkillInputError otherwise (no such parameter, or an empty one, grants nothing); a SkillError that is retryable
    when the grants cannot be read now. Outside a stack (no stage) there is one tenant to a process: nothing to check.
    """
    if stage is None:
        return
    how = "post with the tenant's own token_parameter or an incoming webhook_parameter"
    if not _PATH_PART.fullmatch(tenant_id):
        raise SkillInputError(f"tenant id {tenant_id!r} cannot name a grant of Slack channels: {how}")
    name = GRANTS_PARAMETER.format(stage=stage, tenant=tenant_id)
    try:
        granted = {c.lower() for c in re.split(r"[\s,]+", read(name)) if c}
    except SkillError as exc:
        if exc.retryable:
            raise
        granted = set()  # not found, or empty
    if channel.strip().lower() not in granted:
        raise SkillInputError(f"channel {channel!r} is not granted to tenant {tenant_id} for the deployment's Slack "
                              f"bot (an operator lists a tenant's channels in {name}); or {how}")


class SlackSendSkill(ExternalSkill):
    """Posts to Slack, paced per channel, behind the `slack` breaker."""

    name: ClassVar[str] = "slack_send"
    version: ClassVar[str] = "1.0.0"
    Input: ClassVar[type[BaseModel]] = SlackInput
    Output: ClassVar[type[BaseModel]] = SlackOutput
    deterministic: ClassVar[bool] = False  # Slack assigns the message ts

    def __init__(self, *, resolver: ssrf.Resolver = ssrf.resolve, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolver = resolver

    def run(self, data: SlackInput, ctx: SkillContext) -> SlackOutput:
        message: dict[str, Any] = {"text": data.text, **({"blocks": data.blocks} if data.blocks else {})}
        if data.webhook_url or data.webhook_parameter:
            url = data.webhook_url or self.tenant_secret(data.webhook_parameter or "", ctx)
            target = ssrf.check(url, self.settings.webhook_allow_hosts, self.resolver)
            lane = "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]
            # Its own breaker, the tenant's: a tenant's failing webhook URL must not open the API posts' breaker,
            # nor another tenant's on the same host (hooks.slack.com)
            self._send(ctx, lane, url, {}, message, target.ip, breaker=f"slack-webhook:{target.netloc}")
            return SlackOutput(via="webhook", channel=data.channel, ts=None)
        parameter = data.token_parameter or self.settings.slack_token_parameter
        if not parameter:
            raise SkillError("slack_send needs a bot token: set SLACK_TOKEN_PARAMETER or give token_parameter",
                             code="not_configured")
        # The deployment's bot token (to the channels granted to the tenant), or a token the tenant keeps among its
        # own secrets (its own bot: any channel it is in)
        if data.token_parameter:
            token = self.tenant_secret(parameter, ctx)
        else:
            self._granted(str(data.channel), ctx)
            token = self.secret(parameter)
        headers = {"authorization": f"Bearer {token}"}
        url = self.settings.slack_base_url.rstrip("/") + "/chat.postMessage"
        answer = self._send(ctx, str(data.channel), url, headers, {"channel": data.channel, **message}, None)
        try:
            body = answer.json()
        except ValueError as exc:
            raise ExternalError("chat.postMessage answered with a body that is not JSON", code="slack_bad_response",
                                retryable=False) from exc
        if not body.get("ok"):
            error = str(body.get("error", "unknown_error"))
            raise ExternalError(f"chat.postMessage failed: {error}", code=f"slack_{error}",
                                retryable=error in RETRYABLE_ERRORS, status=answer.status)
        return SlackOutput(via="api", channel=body.get("channel") or data.channel, ts=body.get("ts"))

    def _granted(self, channel: str, ctx: SkillContext) -> None:
        check_granted(channel, ctx.tenant_id, self.settings.stage, self.secret)

    def _send(self, ctx: SkillContext, lane: str, url: str, headers: dict[str, str], message: dict[str, Any],
              connect_ip: str | None, breaker: str = "slack") -> Any:
        body = canonical_json(message).encode("utf-8")
        headers = {**headers, "content-type": "application/json; charset=utf-8"}

        built: list[int] = []

        def build(attempt: int) -> HttpRequest:
            wait = pacing.reserve(self.kv, ctx.tenant_id, lane, interval_s=INTERVAL_S,
                                  max_wait_s=self.settings.skill_max_wait_s, clock=self.clock)
            if wait > 0:
                self.sleep(wait)
            built.append(attempt)
            return HttpRequest("POST", url, headers, body, connect_ip)

        try:
            return self.call(breaker, build, ctx.key(), tenant_id=ctx.tenant_id).response
        finally:  # the next message an interval after this one was done, however long it took to arrive
            if built:  # a call refused before any request (an open breaker, no time left) took no slot
                self._hold(ctx, lane)

    def _hold(self, ctx: SkillContext, lane: str) -> None:
        """pacing.hold, best effort: the message is out (or failed) already, and a store that cannot take
        the later slot must not turn a delivered message into an error (its retry would post it twice)."""
        try:
            pacing.hold(self.kv, ctx.tenant_id, lane, until=self.clock() + INTERVAL_S)
        except KvUnavailable as exc:
            logger.warning("slack pacing: the next slot was not moved past this message", lane=lane,
                           error=str(exc))

    def call_budget_s(self) -> float:
        # Each attempt may first wait for its pacing slot, then for a retry: both at most skill_max_wait_s.
        s = self.settings
        return s.skill_max_attempts * (s.skill_connect_timeout_s + s.skill_read_timeout_s + 2 * s.skill_max_wait_s) \
            + 5.0
