"""Signed bearer tokens (JWT, HS256) naming a tenant and an optional role.

The signing material is one JSON document (a Secrets Manager secret when deployed, kept in the
local database for `incident-loop local`): `{"active_kid": "k2", "k1": "<secret>", "k2": "<secret>"}`,
every member but `active_kid` a key id and its secret (at least 32 characters). That flat shape is
what CloudFormation's GenerateSecretString can create. Tokens are signed with the active key and
verified with any listed key, so a key is rotated by adding a new one, making it active, and
removing the old one once its tokens have expired (docs/deploy.md).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

ISSUER = "incident-loop"
AUDIENCE = "incident-loop-api"
ALGORITHM = "HS256"
OPERATOR = "operator"
ROLES = frozenset({OPERATOR})
MAX_TTL_S = 90 * 24 * 3600
MIN_KEY_LENGTH = 32
# A tenant id: letters, digits, "_", "." and "-", 1-128 of them. Ids name paths and keys (a tenant's secrets live
# under `.../tenants/<tenant>/`): with a "/" allowed, tenant `acme` owned the secrets of tenant `acme/eu`.
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# What no token may name, whenever it was issued: a path or key separator, a space or a control character. A
# token issued before TENANT_ID (any id up to 128 characters) keeps working unless its id holds one of these.
UNSAFE_TENANT_ID = re.compile(r"[/#\s\x00-\x1f\x7f]")


class InvalidToken(ValueError):
    """The token is missing, malformed, expired, forged or signed by an unknown key."""


@dataclass(frozen=True)
class Principal:
    """Who the API is talking to: the tenant every row is scoped by, and a role (or none)."""

    subject: str
    tenant_id: str
    role: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR


@dataclass(frozen=True)
class KeySet:
    active_kid: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, document: str | dict[str, Any]) -> KeySet:
        data = dict(json.loads(document) if isinstance(document, str) else document)
        active = str(data.pop("active_kid", ""))
        keys = {str(kid): str(secret).encode() for kid, secret in data.items()}
        if active not in keys:
            raise ValueError(f"the active key {active!r} is not among the keys")
        if any(len(key) < MIN_KEY_LENGTH for key in keys.values()):
            raise ValueError(f"every signing key must be at least {MIN_KEY_LENGTH} characters")
        return cls(active, keys)

    @classmethod
    def generate(cls, kid: str = "k1") -> KeySet:
        return cls(kid, {kid: secrets.token_urlsafe(48).encode()})

    def rotated(self, kid: str | None = None) -> KeySet:
        """A new active key beside the current ones (tokens signed with the old ones still verify)."""
        kid = kid or f"k{len(self.keys) + 1}-{secrets.token_hex(2)}"
        return KeySet(kid, {**self.keys, kid: secrets.token_urlsafe(48).encode()})

    def without(self, kid: str) -> KeySet:
        """The set without a retired key (its tokens stop verifying)."""
        if kid == self.active_kid:
            raise ValueError("the active key cannot be removed; rotate first")
        return KeySet(self.active_kid, {k: v for k, v in self.keys.items() if k != kid})

    def dumps(self) -> str:
        return json.dumps({"active_kid": self.active_kid, **{kid: key.decode() for kid, key in self.keys.items()}})


def issue(keys: KeySet, tenant_id: str, role: str | None = None, *, ttl_s: int = 3600,
          subject: str | None = None, now: float | None = None) -> str:
    """A token for `tenant_id` (and `role`), valid for `ttl_s` seconds."""
    if not TENANT_ID.fullmatch(tenant_id):
        raise ValueError("tenant_id must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {sorted(ROLES)}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in 1..{MAX_TTL_S}")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject or f"{tenant_id}/client",
                              "tenant_id": tenant_id, "iat": issued, "exp": issued + ttl_s}
    if role:
        claims["role"] = role
    return jwt.encode(claims, keys.keys[keys.active_kid], algorithm=ALGORITHM, headers={"kid": keys.active_kid})


def verify(keys: KeySet, token: str) -> Principal:
    """The principal a token names; InvalidToken for anything else."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = keys.keys.get(str(kid))
        if key is None:
            raise InvalidToken("the token names an unknown signing key")
        options = {"require": ["exp", "iat", "iss", "aud", "sub", "tenant_id"]}
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER, options=options)
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    role = claims.get("role")
    tenant = claims.get("tenant_id")
    bad_role = role is not None and (not isinstance(role, str) or role not in ROLES)  # a list is no role
    unsafe = not isinstance(tenant, str) or not 0 < len(tenant) <= 128 or UNSAFE_TENANT_ID.search(tenant)
    if unsafe or bad_role:
        raise InvalidToken("the token's tenant or role is not valid")
    return Principal(subject=str(claims["sub"]), tenant_id=tenant, role=role)


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("expected an Authorization header of the form 'Bearer <token>'")
    return token.strip()
