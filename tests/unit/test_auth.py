"""Bearer tokens and the TOKEN authorizer: who may call, as which tenant, in which role."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from incident_loop.auth.authorizer import Unauthorized, authorize, stage_arn
from incident_loop.auth.tokens import AUDIENCE, ISSUER, InvalidToken, KeySet, bearer, issue, verify

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/loops/inc_1"


def _event(token: str) -> dict[str, str]:
    return {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": METHOD_ARN}


def test_a_token_names_its_tenant_and_role_in_the_authorizer_context() -> None:
    keys = KeySet.generate()
    answer = authorize(_event(issue(keys, "tenant-a", "operator")), keys)
    assert answer["context"] == {"tenant_id": "tenant-a", "role": "operator"}
    statement = answer["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    # A cached answer serves the caller's next route too: the policy covers the whole stage.
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/*"


def test_a_token_without_a_role_carries_an_empty_role() -> None:
    keys = KeySet.generate()
    assert authorize(_event(issue(keys, "tenant-a")), keys)["context"]["role"] == ""


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "bearer    ", "Token x.y.z"])
def test_a_missing_or_malformed_header_is_unauthorized(header: str) -> None:
    keys = KeySet.generate()
    with pytest.raises(Unauthorized, match="^Unauthorized$"):
        authorize({"type": "TOKEN", "authorizationToken": header, "methodArn": METHOD_ARN}, keys)


def test_an_expired_token_is_unauthorized() -> None:
    keys = KeySet.generate()
    token = issue(keys, "tenant-a", ttl_s=60, now=time.time() - 120)
    with pytest.raises(Unauthorized):
        authorize(_event(token), keys)


def test_a_token_signed_with_another_key_is_unauthorized() -> None:
    mine, theirs = KeySet.generate(), KeySet.generate()
    with pytest.raises(Unauthorized):
        authorize(_event(issue(theirs, "tenant-a")), mine)


def test_a_token_with_edited_claims_is_unauthorized() -> None:
    keys = KeySet.generate()
    header, claims, signature = issue(keys, "tenant-a").split(".")
    forged_claims = jwt.utils.base64url_encode(json.dumps(
        {**json.loads(jwt.utils.base64url_decode(claims)), "tenant_id": "tenant-b"}).encode()).decode()
    with pytest.raises(Unauthorized):
        authorize(_event(f"{header}.{forged_claims}.{signature}"), keys)


def test_an_unsigned_token_is_unauthorized() -> None:
    keys = KeySet.generate()
    claims = {"iss": "incident-loop", "aud": "incident-loop-api", "sub": "x", "tenant_id": "tenant-a",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": keys.active_kid})
    with pytest.raises(Unauthorized):
        authorize(_event(unsigned), keys)


def test_a_token_for_another_audience_is_refused() -> None:
    keys = KeySet.generate()
    claims = {"iss": "incident-loop", "aud": "someone-else", "sub": "x", "tenant_id": "tenant-a",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, keys.keys[keys.active_kid], algorithm="HS256", headers={"kid": keys.active_kid})
    with pytest.raises(InvalidToken):
        verify(keys, token)


@pytest.mark.parametrize("role", [["operator"], {"r": 1}, 7])
def test_a_signed_token_whose_role_is_not_a_string_is_unauthorized(role: object) -> None:
    """A list is no role: it raised TypeError (unhashable) in the role check, a 500 instead of a 401."""
    keys = KeySet.generate()
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tenant_id": "tenant-a", "role": role,
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, keys.keys[keys.active_kid], algorithm="HS256", headers={"kid": keys.active_kid})
    with pytest.raises(Unauthorized):
        authorize(_event(token), keys)


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() -> None:
    old = KeySet.generate()
    old_token = issue(old, "tenant-a")
    rotated = old.rotated()
    new_token = issue(rotated, "tenant-a")
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.active_kid != old.active_kid
    assert verify(rotated, old_token).tenant_id == "tenant-a"
    retired = rotated.without(old.active_kid)
    assert verify(retired, new_token).tenant_id == "tenant-a"
    with pytest.raises(InvalidToken):
        verify(retired, old_token)


def test_the_key_set_round_trips_in_the_shape_cloudformation_generates() -> None:
    generated = json.dumps({"active_kid": "k1", "k1": "A" * 64})  # GenerateSecretString's output shape
    keys = KeySet.parse(generated)
    assert keys.active_kid == "k1" and KeySet.parse(keys.dumps()) == keys
    with pytest.raises(ValueError, match="at least"):
        KeySet.parse({"active_kid": "k1", "k1": "short"})
    with pytest.raises(ValueError, match="active key"):
        KeySet.parse({"active_kid": "k2", "k1": "A" * 64})


@pytest.mark.parametrize("role", ["admin", "OPERATOR", ""])
def test_only_known_roles_are_issued(role: str) -> None:
    with pytest.raises(ValueError):
        issue(KeySet.generate(), "tenant-a", role or "root")


def test_bearer_extracts_the_token() -> None:
    assert bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer("bearer  abc ") == "abc"


def test_stage_arn_covers_every_method_and_path_of_the_stage() -> None:
    assert stage_arn(METHOD_ARN).endswith("abc123/dev/*")


def _token_naming(keys: KeySet, tenant: str) -> str:
    """A validly signed token for any tenant id (as one issued before ids were checked)."""
    claims = {"iss": "incident-loop", "aud": "incident-loop-api", "sub": "s", "tenant_id": tenant,
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    return jwt.encode(claims, keys.keys[keys.active_kid], algorithm="HS256", headers={"kid": keys.active_kid})


@pytest.mark.parametrize("tenant", ["acme/eu", "acme#1", "a b", "", "x" * 129, "t\n"])
def test_a_tenant_id_that_could_name_another_tenants_paths_is_refused_at_issue_and_at_the_door(tenant: str) -> None:
    """Tenant `acme` owns the secrets under `.../tenants/acme/`: a tenant named `acme/eu` would have had its secrets
    there too. Such ids are never issued, and a token carrying one (signed by whoever holds the keys) is refused."""
    keys = KeySet.generate()
    with pytest.raises(ValueError, match="tenant_id must be"):
        issue(keys, tenant)
    with pytest.raises(Unauthorized):
        authorize(_event(_token_naming(keys, tenant)), keys)


@pytest.mark.parametrize("tenant", ["-lead", "acme:eu", "ops@example.com"])
def test_a_tenant_issued_before_ids_were_checked_keeps_its_access_when_its_id_is_safe(tenant: str) -> None:
    """New ids are letters, digits, '_', '.' and '-'; an older token whose id holds no separator still works."""
    keys = KeySet.generate()
    with pytest.raises(ValueError, match="tenant_id must be"):
        issue(keys, tenant)
    assert authorize(_event(_token_naming(keys, tenant)), keys)["context"]["tenant_id"] == tenant


def test_the_longest_and_plainest_tenant_ids_are_issued() -> None:
    keys = KeySet.generate()
    for tenant in ("t", "tenant-a", "acme.eu_1", "x" * 128):
        assert authorize(_event(issue(keys, tenant)), keys)["context"]["tenant_id"] == tenant
