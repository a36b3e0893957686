"""Standard Webhooks (standardwebhooks.com): signing secrets, signatures, message ids and the retry schedule.

A secret is "whsec_" + base64 of 24-64 random bytes. The signature of one attempt is
`v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`; with several active secrets
(rotation) the header carries one signature per secret, space-separated, and a receiver accepts the message
when any of them verifies with a secret it holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence

from incident_loop.skills.errors import SkillInputError

PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
MAX_SECRETS = 3  # the current one, the next during a rotation, and one spare
# The spec's schedule: attempt i (0-based) goes SCHEDULE_S[i] seconds after attempt i - 1.
SCHEDULE_S: tuple[float, ...] = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


def parse_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret; SkillInputError (without the secret) if it is malformed."""
    if not secret.startswith(PREFIX):
        raise SkillInputError("a webhook secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SkillInputError("a webhook secret must be 'whsec_' + base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SkillInputError(f"a webhook secret must hold {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, "
                              f"not {len(key)}")
    return key


def split_secrets(text: str) -> list[str]:
    """Secrets as a parameter holds them: whitespace- or comma-separated, newest first."""
    return [part for part in text.replace(",", " ").split() if part]


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value: one `v1,<base64>` per key, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
                    for key in keys)


def headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt (a fresh timestamp each attempt, the same id)."""
    return {"content-type": "application/json", "user-agent": "incident-loop-webhooks/1.0",
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(keys, msg_id, timestamp, body)}


def message_id(tenant_id: str, key: str | None) -> str:
    """The webhook-id: derived from the idempotency key (stable across retries and redeliveries), or random
    for a call without one."""
    if key is None:
        return f"msg_{uuid.uuid4().hex}"
    return "msg_" + hashlib.sha256(f"{tenant_id}\x1f{key}".encode()).hexdigest()[:32]


def new_secret() -> str:
    """A fresh secret (32 random bytes), for operators rotating keys."""
    import secrets

    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
