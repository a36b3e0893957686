"""The API's Lambda TOKEN authorizer: a bearer token in, an IAM policy and the principal's context out.

API Gateway caches the answer per token (`ReauthorizeEvery`), so the policy allows every route of
the stage: a cached answer must serve the caller's next request on another route too. What a role
may do is decided by the routes themselves (403), not by the cached policy.
"""

from __future__ import annotations

import time
from typing import Any

from incident_loop.auth.tokens import InvalidToken, KeySet, Principal, bearer, verify
from incident_loop.settings import get_settings

_cache: tuple[float, KeySet] | None = None
KEYS_MAX_AGE_S = 60.0


def signing_keys() -> KeySet:
    """The key set from Secrets Manager, cached for a minute per warm container (rotation takes effect)."""
    global _cache
    if _cache is not None and time.monotonic() - _cache[0] < KEYS_MAX_AGE_S:
        return _cache[1]
    from aws_lambda_powertools.utilities import parameters

    arn = get_settings().api_signing_secret_arn
    if not arn:
        raise RuntimeError("API_SIGNING_SECRET_ARN is not set")
    keys = KeySet.parse(str(parameters.get_secret(arn, max_age=int(KEYS_MAX_AGE_S))))
    _cache = (time.monotonic(), keys)
    return keys


def reset_keys() -> None:
    global _cache
    _cache = None


def stage_arn(method_arn: str) -> str:
    """arn:aws:execute-api:region:account:api/stage/* from the invoked method's ARN."""
    parts = method_arn.split("/")
    return "/".join(parts[:2]) + "/*" if len(parts) >= 2 else method_arn


def policy(principal: Principal, method_arn: str) -> dict[str, Any]:
    return {
        "principalId": principal.subject,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_arn(method_arn)}],
        },
        # Context values must be strings, numbers or booleans: an absent role is "".
        "context": {"tenant_id": principal.tenant_id, "role": principal.role or ""},
    }


def authorize(event: dict[str, Any], keys: KeySet | None = None) -> dict[str, Any]:
    """API Gateway's TOKEN event in, its policy out; `Unauthorized` (API Gateway's 401) for a bad token."""
    try:
        principal = verify(keys or signing_keys(), bearer(event.get("authorizationToken")))
    except InvalidToken as exc:
        # API Gateway answers 401 exactly when the authorizer raises "Unauthorized".
        raise Unauthorized("Unauthorized") from exc
    return policy(principal, str(event.get("methodArn") or ""))


class Unauthorized(Exception):
    """Raised with the message "Unauthorized", which API Gateway turns into 401."""
