"""The skills' secrets (skills/secrets.py) against moto: a secret that does not exist fails at once, one that
exists is read, and a stored secret of SSM or Secrets Manager alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from incident_loop import aws
from incident_loop.settings import get_settings
from incident_loop.skills import secrets
from incident_loop.skills.errors import SkillError

NAME = "/incident-loop/test/tenants/tenant-a/hooks"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        aws.reset()
        secrets.reset()
        yield boto3.client("ssm", region_name="us-east-1"), boto3.client("secretsmanager", region_name="us-east-1")
        secrets.reset()
        aws.reset()


@pytest.mark.parametrize("name", [NAME + "-typo", "secretsmanager:incident-loop/test/tenants/tenant-a/missing"])
def test_a_secret_that_does_not_exist_is_not_retried(cloud: Any, name: str) -> None:
    """A typo in a tenant's secret_parameter will not appear on a retry (it was retried for every delivery of
    the run, about 5 hours, into the DLQ)."""
    with pytest.raises(SkillError) as raised:
        secrets.fetch(name)
    assert (raised.value.code, raised.value.retryable) == ("secret_not_found", False)


def test_a_stored_secret_is_read_from_ssm_and_from_secrets_manager(cloud: Any) -> None:
    ssm, manager = cloud
    ssm.put_parameter(Name=NAME, Value=" whsec_a ", Type="SecureString")
    manager.create_secret(Name="incident-loop/test/tenants/tenant-a/slack", SecretString="xoxb-1")
    assert secrets.fetch(NAME) == "whsec_a"
    assert secrets.fetch("secretsmanager:incident-loop/test/tenants/tenant-a/slack") == "xoxb-1"


@pytest.mark.parametrize(("name", "owned"), [
    ("/incident-loop/test/tenants/tenant-a/hooks", True),
    ("secretsmanager:incident-loop/test/tenants/tenant-a/slack", True),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:incident-loop/test/tenants/tenant-a/slack-AbCdEf", True),
    # The functions may read `secret:incident-loop/<stage>/*` only: a leading slash passed and was then denied,
    # retried as unavailable into the DLQ.
    ("secretsmanager:/incident-loop/test/tenants/tenant-a/slack", False),
    ("/incident-loop/test/tenants/tenant-b/hooks", False),
    ("/incident-loop/test/tenants/tenant-a", False),
])
def test_a_call_may_name_only_its_tenants_own_secrets_as_the_functions_may_read_them(name: str, owned: bool) -> None:
    assert secrets.tenant_owns(name, "tenant-a") is owned


@pytest.mark.parametrize(("name", "owned"), [
    ("/incident-loop/prod/tenants/tenant-a/hooks", True),
    ("secretsmanager:incident-loop/prod/tenants/tenant-a/slack", True),
    ("/incident-loop/dev/tenants/tenant-a/hooks", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:incident-loop/dev/tenants/tenant-a/slack-AbCdEf", False),
    ("/incident-loop/prod-2/tenants/tenant-a/hooks", False),
])
def test_in_a_stack_a_call_may_name_only_its_own_stages_secrets(
        name: str, owned: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions may read incident-loop/<Stage>/* only (template.yaml): another stage's name was accepted, then
    denied by IAM as a retryable error, and the run retried for hours into the DLQ."""
    monkeypatch.setenv("STAGE", "prod")
    get_settings.cache_clear()
    try:
        assert secrets.tenant_owns(name, "tenant-a") is owned
    finally:
        monkeypatch.delenv("STAGE")
        get_settings.cache_clear()


def test_a_name_the_store_refuses_fails_at_once_and_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """SSM answers ValidationException for a name it cannot hold (a tenant id like acme@eu in the path): the same
    name is refused on every retry, so the call fails at once instead of being retried for hours into the DLQ."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import ClientError

    class Refusing:
        def get(self, name: str, **kwargs: Any) -> str:
            try:
                raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad name"}}, "GetParameter")
            except ClientError as exc:
                raise GetParameterError(str(exc)) from exc

    monkeypatch.setattr(secrets, "_ssm", lambda: Refusing())
    with pytest.raises(SkillError) as raised:
        secrets.fetch("/incident-loop/prod/slack-grants/acme@eu")
    assert (raised.value.code, raised.value.retryable) == ("secret_invalid", False)
