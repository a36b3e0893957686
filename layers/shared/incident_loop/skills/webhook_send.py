"""webhook_send: a JSON payload POSTed with Standard Webhooks signatures (signing.py).

    {"url": "https://hooks.example.com/in", "payload": {"type": "checkpoint.created", "data": {...}},
     "secret_parameter": "/incident-loop/webhooks/tenant-a"}       (or, locally, "secrets": ["whsec_..."])

* webhook-id comes from the idempotency key: every retry and redelivery of one op carries the same id, so
  the receiver can deduplicate; each attempt has a fresh webhook-timestamp and signature.
* The spec's schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each delay scaled by
  Settings.webhook_retry_scale and jittered ±10% from the key. Inside one call only the waits up to
  Settings.skill_max_wait_s are slept; then the call raises a retryable ExternalError whose retry_after_s is
  the next attempt's delay, and the attempts made so far are kept (kv, reserved namespace `_webhook_delivery`,
  per webhook-id) so the next call continues the schedule. After the eighth attempt: `webhook_exhausted`.
* A 410 disables the endpoint for the tenant (kv, `_webhook_endpoints`): later sends raise EndpointDisabled
  until `enable_endpoint` is called.
* The SSRF guard (ssrf.py) checks the URL and pins the connection to the checked address.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from urllib3.util import parse_url

import incident_loop.skills.signing as signing
import incident_loop.skills.ssrf as ssrf
from incident_loop.observability import logger
from incident_loop.skills.base import ExternalSkill, SkillContext
from incident_loop.skills.deterministic import jittered
from incident_loop.skills.errors import (
    CircuitOpen,
    EndpointDisabled,
    ExternalError,
    SizeLimitExceeded,
    SkillInputError,
)
from incident_loop.skills.hashing import canonical_json
from incident_loop.skills.kvtable import KvTable, KvUnavailable
from incident_loop.skills.transport import HttpRequest

ENDPOINTS = "_webhook_endpoints"
DELIVERIES = "_webhook_delivery"
DELIVERY_TTL_S = 2 * 24 * 3600  # longer than the whole schedule (about 28 h)
MAX_BODY_BYTES = 256 * 1024


class WebhookInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    payload: Any
    secrets: list[str] | None = Field(default=None, min_length=1, max_length=signing.MAX_SECRETS)
    secret_parameter: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_secret_source(self) -> WebhookInput:
        if (self.secrets is None) == (self.secret_parameter is None):
            raise ValueError("give exactly one of secrets or secret_parameter")
        for secret in self.secrets or ():
            try:
                signing.parse_secret(secret)
            except SkillInputError as exc:  # a ValueError, so that pydantic reports it as this field's error
                raise ValueError(str(exc)) from None
        return self


class WebhookOutput(BaseModel):
    webhook_id: str
    status_code: int
    attempts: int  # requests made for this message, over every call
    delivered: bool = True


def endpoint_key(url: str) -> str:
    """The endpoint's record key: a hash of the URL (its path and query may hold secrets)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]


def enable_endpoint(tenant_id: str, url: str, kv: KvTable | None = None) -> bool:
    """Re-enable an endpoint a 410 disabled; whether it was disabled."""
    return (kv or KvTable()).delete(tenant_id, ENDPOINTS, endpoint_key(url))


class WebhookSendSkill(ExternalSkill):
    """Signed webhook delivery with the Standard Webhooks retry schedule."""

    name: ClassVar[str] = "webhook_send"
    version: ClassVar[str] = "1.0.0"
    Input: ClassVar[type[BaseModel]] = WebhookInput
    Output: ClassVar[type[BaseModel]] = WebhookOutput
    deterministic: ClassVar[bool] = False  # the attempts count depends on the receiver

    def __init__(self, *, resolver: ssrf.Resolver = ssrf.resolve, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolver = resolver

    def schedule_delays(self, key: str, start: int) -> list[float]:
        """The waits before attempts start..7 (0-based) of the spec's schedule, scaled and jittered by key."""
        scale = self.settings.webhook_retry_scale
        return [jittered(key, f"webhook:{i}", signing.SCHEDULE_S[i] * scale)
                for i in range(start, len(signing.SCHEDULE_S))]

    def parse(self, args: Any) -> BaseModel:
        data = super().parse(args)
        assert isinstance(data, WebhookInput)
        size = len(canonical_json(data.payload).encode("utf-8"))
        if size > MAX_BODY_BYTES:
            raise SizeLimitExceeded(f"payload is {size} bytes as JSON; the limit is {MAX_BODY_BYTES}")
        return data

    def run(self, data: WebhookInput, ctx: SkillContext) -> WebhookOutput:
        tenant, key = ctx.tenant_id, ctx.key()
        target = ssrf.check(data.url, self.settings.webhook_allow_hosts, self.resolver)
        disabled = self.kv.get(tenant, ENDPOINTS, endpoint_key(data.url))
        if disabled is not None:
            raise EndpointDisabled(f"{target.netloc} answered 410 Gone at {disabled.value.get('disabled_at')}; "
                                   "sends are refused until the endpoint is re-enabled")
        texts = data.secrets or signing.split_secrets(self.tenant_secret(data.secret_parameter or "", ctx))
        keys = [signing.parse_secret(text) for text in texts[:signing.MAX_SECRETS]]
        msg_id = signing.message_id(tenant, key)
        body = canonical_json(data.payload).encode("utf-8")
        before = self._attempts_before(tenant, msg_id) if key else 0
        if before >= len(signing.SCHEDULE_S):
            raise ExternalError(f"webhook {msg_id} failed all {before} attempts of the schedule",
                                code="webhook_exhausted", retryable=False, attempts=0)

        def build(attempt: int) -> HttpRequest:
            stamp = int(self.clock())
            return HttpRequest("POST", data.url, signing.headers(keys, msg_id, stamp, body), body, target.ip)

        try:
            sent = self.call(f"webhook:{target.netloc}", build, key, self.schedule_delays(key or msg_id, before + 1),
                             tenant_id=tenant)
        except (ExternalError, CircuitOpen) as exc:
            try:
                self._failed(exc, tenant, data.url, target.netloc, msg_id, key, before)
            except KvUnavailable as lost:  # the bookkeeping, best effort: the call's own error stands
                logger.warning("webhook delivery state not recorded", webhook_id=msg_id, error=str(lost))
            raise
        if before:
            # Best effort, as slack_send's pacing: the webhook is delivered, and a store that cannot forget its
            # schedule must not turn it into an error (the retry would deliver it again; the state expires).
            try:
                self.kv.delete(tenant, DELIVERIES, msg_id)
            except KvUnavailable as lost:
                logger.warning("webhook delivery state not cleared", webhook_id=msg_id, error=str(lost))
        return WebhookOutput(webhook_id=msg_id, status_code=sent.response.status, attempts=before + sent.attempts)

    def _attempts_before(self, tenant: str, msg_id: str) -> int:
        state = self.kv.get(tenant, DELIVERIES, msg_id)
        return int(state.value.get("attempts", 0)) if state is not None else 0

    def _failed(self, exc: ExternalError | CircuitOpen, tenant: str, url: str, netloc: str, msg_id: str,
                key: str | None, before: int) -> None:
        """Record what a failed call leaves behind: a disabled endpoint, or the schedule's position."""
        if isinstance(exc, ExternalError) and exc.status == 410:
            parts = parse_url(url)
            self.kv.put(tenant, ENDPOINTS, endpoint_key(url), {
                "url": f"{parts.scheme}://{parts.netloc}{parts.path or ''}", "status": 410,
                "disabled_at": datetime.fromtimestamp(self.clock(), UTC).isoformat(), "webhook_id": msg_id})
            logger.warning("webhook endpoint disabled after 410", target=netloc, webhook_id=msg_id)
            raise EndpointDisabled(f"{netloc} answered 410 Gone: the endpoint is disabled") from exc
        made = before + exc.attempts
        if not exc.retryable or key is None or exc.attempts == 0:
            return
        if made >= len(signing.SCHEDULE_S):
            self.kv.put(tenant, DELIVERIES, msg_id, {"attempts": made, "next_attempt_at": None,
                                                     "last_error": exc.code}, ttl_s=DELIVERY_TTL_S)
            raise ExternalError(f"webhook {msg_id} failed all {made} attempts of the schedule; last: {exc}",
                                code="webhook_exhausted", retryable=False, status=getattr(exc, "status", None),
                                attempts=exc.attempts) from exc
        wait = max(self.schedule_delays(key, made)[0], exc.retry_after_s or 0.0)
        exc.retry_after_s = wait
        self.kv.put(tenant, DELIVERIES, msg_id, {"attempts": made, "next_attempt_at": round(self.clock() + wait, 3),
                                                 "last_error": exc.code}, ttl_s=DELIVERY_TTL_S)

    def call_budget_s(self) -> float:
        # Only schedule waits within skill_max_wait_s happen inside a call (a Retry-After may stretch each
        # to that bound); every attempt may take its connect and read timeouts.
        s = self.settings
        retries = sum(1 for d in signing.SCHEDULE_S[1:] if d * s.webhook_retry_scale * 1.1 <= s.skill_max_wait_s)
        return (retries + 1) * (s.skill_connect_timeout_s + s.skill_read_timeout_s) + retries * s.skill_max_wait_s \
            + 5.0


def next_attempt_at(tenant_id: str, webhook_id: str, kv: KvTable | None = None) -> float | None:
    """When the next attempt of an undelivered message is due (epoch seconds); None if none is (delivered,
    never failed, or given up)."""
    state = (kv or KvTable()).get(tenant_id, DELIVERIES, webhook_id)
    if state is None or state.value.get("next_attempt_at") is None:
        return None
    return float(state.value["next_attempt_at"])
