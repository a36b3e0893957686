"""Secrets for the skills (Slack bot token, Voyage API key, webhook signing secrets) through Powertools
Parameters: a Secrets Manager ARN (or `secretsmanager:NAME`) is read from Secrets Manager, anything else is an
SSM parameter name (SecureString decrypted). Values are cached for MAX_AGE_S and never logged."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from incident_loop import aws
from incident_loop.settings import get_settings
from incident_loop.skills.errors import SkillError

MAX_AGE_S = 300  # a rotated secret is picked up within five minutes
SECRETS_PREFIX = "secretsmanager:"
# Where a tenant's own secrets live, under the stage's prefix that the functions may read:
# SSM `/incident-loop/<stage>/tenants/<tenant>/...`, Secrets Manager `incident-loop/<stage>/tenants/<tenant>/...`
# (A Secrets Manager name has no leading slash: the functions may read `secret:incident-loop/<stage>/*` only.)
_TENANT_SECRET = (r"^(?:(?:arn:aws[\w-]*:secretsmanager:[\w-]+:\d{{12}}:secret:|{prefix})incident-loop|/incident-loop)"
                  r"/{stage}/tenants/{tenant}/[^/]")


def tenant_owns(name: str, tenant_id: str, stage: str | None = None) -> bool:
    """Whether a secret's name is one of the tenant's own (what a call's arguments may name): under this stage's
    prefix (`stage`, else Settings.stage; neither: any stage). Another stage's the functions may not read: IAM
    denied it, a retryable error, and the run was retried for hours into the DLQ."""
    stage = stage or get_settings().stage
    pattern = _TENANT_SECRET.format(prefix=re.escape(SECRETS_PREFIX), tenant=re.escape(tenant_id),
                                    stage=re.escape(stage) if stage else "[^/]+")
    return re.match(pattern, name) is not None


@cache
def _ssm() -> SSMProvider:
    return SSMProvider(boto3_client=aws.client("ssm"))


@cache
def _secrets() -> SecretsProvider:
    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def fetch(name: str) -> str:
    """The secret's value as text. Raises SkillError: "secret_not_found" (not retryable) when it does not
    exist, else "secret_unavailable" (retryable)."""
    try:
        value: Any
        if name.startswith("arn:aws:secretsmanager:"):
            value = _secrets().get(name, max_age=MAX_AGE_S)
        elif name.startswith(SECRETS_PREFIX):
            value = _secrets().get(name[len(SECRETS_PREFIX):], max_age=MAX_AGE_S)
        else:
            value = _ssm().get(name, max_age=MAX_AGE_S, decrypt=True)
    except (GetParameterError, TransformParameterError) as exc:
        # The message names the parameter, never its value. A secret that does not exist (a typo in a
        # tenant's secret_parameter) will not appear on a retry: failed at once, where retrying it took the
        # run's every delivery (about 5 h) into the DLQ. Throttling, a network error, denied access stay
        # retryable (a deploy may grant it).
        code = _error_code(exc)
        missing, invalid = code in _NOT_FOUND, code == "ValidationException"  # a name SSM refuses is no better later
        raise SkillError(f"secret {name!r} could not be read: {type(exc).__name__}"
                         + (" (it does not exist)" if missing else " (not a name the store takes)" if invalid else ""),
                         code="secret_not_found" if missing else "secret_invalid" if invalid else "secret_unavailable",
                         retryable=not (missing or invalid)) from exc
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str) or not value.strip():
        raise SkillError(f"secret {name!r} is empty", code="secret_unavailable", retryable=False)
    return value.strip()


_NOT_FOUND = frozenset({"ParameterNotFound", "ResourceNotFoundException"})


def _error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a Powertools parameter error (its cause, a botocore ClientError)."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def reset() -> None:
    """Forget the providers and their cached values (tests, after the environment changed)."""
    _ssm.cache_clear()
    _secrets.cache_clear()
