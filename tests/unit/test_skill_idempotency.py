"""IdempotentSkill on Powertools idempotency (DynamoDB on moto in-process): hits, conflicts, retries, metrics."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from pydantic import BaseModel

from incident_loop.skills import metrics
from incident_loop.skills.base import IdempotentSkill, SkillContext
from incident_loop.skills.errors import ExternalError, IdempotencyConflict, IdempotencyInProgress
from incident_loop.skills.idempotency import register_lambda_context
from incident_loop.skills.kv_store import KvStoreSkill
from incident_loop.skills.kvtable import KvTable
from incident_loop_dev.fakes.aws import IDEMPOTENCY_TABLE, KV_TABLE
from incident_loop_dev.fakes.emf import total


class Args(BaseModel):
    n: int


class Result(BaseModel):
    doubled: int
    effect: int


class Doubler(IdempotentSkill):
    """Counts its effects; fails while `failures` is positive."""

    name: ClassVar[str] = "doubler"
    version: ClassVar[str] = "0.1.0"
    Input: ClassVar[type[BaseModel]] = Args
    Output: ClassVar[type[BaseModel]] = Result
    deterministic: ClassVar[bool] = True

    def __init__(self, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.effects, self.failures = 0, failures

    def run(self, data: Args, ctx: SkillContext) -> Result:
        if self.failures:
            self.failures -= 1
            raise ExternalError("down", code="http_503", retryable=True, status=503)
        self.effects += 1
        return Result(doubled=data.n * 2, effect=self.effects)


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


def persistence(client: Any) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=client)


def test_a_repeat_with_the_same_key_returns_the_stored_result_and_counts_a_hit(client: Any,
                                                                               capsys: pytest.CaptureFixture) -> None:
    skill, ctx = Doubler(persistence=persistence(client)), SkillContext("tenant-a", idempotency_key="op-1")
    first = skill.execute({"n": 21}, ctx)
    second = skill.execute({"n": 21}, ctx)
    assert first == second == {"doubled": 42, "effect": 1}
    assert skill.effects == 1
    out = capsys.readouterr().out
    assert total(out, metrics.IDEMPOTENCY_HITS, skill="doubler") == 1
    assert total(out, metrics.EXECUTIONS, skill="doubler", status="success") == 2


def test_the_same_key_with_other_arguments_is_a_counted_conflict(client: Any, capsys: pytest.CaptureFixture) -> None:
    skill, ctx = Doubler(persistence=persistence(client)), SkillContext("tenant-a", idempotency_key="op-1")
    skill.execute({"n": 1}, ctx)
    with pytest.raises(IdempotencyConflict, match="op-1"):
        skill.execute({"n": 2}, ctx)
    assert skill.effects == 1
    out = capsys.readouterr().out
    assert total(out, metrics.IDEMPOTENCY_CONFLICTS, skill="doubler") == 1
    assert total(out, metrics.EXECUTIONS, skill="doubler", status="failure") == 1


def test_the_key_is_per_tenant_and_per_skill(client: Any) -> None:
    store = persistence(client)
    skill = Doubler(persistence=store)
    skill.execute({"n": 1}, SkillContext("tenant-a", idempotency_key="op-1"))
    skill.execute({"n": 1}, SkillContext("tenant-b", idempotency_key="op-1"))
    assert skill.effects == 2  # another tenant's key never replays this tenant's result
    kv = KvStoreSkill(kv=KvTable(KV_TABLE, client), persistence=DynamoDBPersistenceLayer(
        table_name=IDEMPOTENCY_TABLE, boto3_client=client))
    # Another skill with the same key and tenant runs its own effect.
    assert kv.execute({"op": "set", "key": "k", "value": 1}, SkillContext("tenant-a", idempotency_key="op-1"))["found"]


def test_a_failed_effect_leaves_no_record_so_a_retry_runs_it(client: Any) -> None:
    skill, ctx = Doubler(failures=1, persistence=persistence(client)), SkillContext("t", idempotency_key="op-9")
    with pytest.raises(ExternalError):
        skill.execute({"n": 5}, ctx)
    assert skill.execute({"n": 5}, ctx) == {"doubled": 10, "effect": 1}


def test_a_key_derived_from_the_workflow_deduplicates_like_a_given_one(client: Any) -> None:
    skill = Doubler(persistence=persistence(client))
    ctx = SkillContext("t", workflow_run_id="run-7", op_index=2)
    skill.execute({"n": 3}, ctx)
    skill.execute({"n": 3}, SkillContext("t", workflow_run_id="run-7", op_index=2))
    assert skill.effects == 1
    skill.execute({"n": 3}, SkillContext("t", workflow_run_id="run-7", op_index=3))
    assert skill.effects == 2


def test_without_a_key_every_call_runs(client: Any) -> None:
    skill = Doubler(persistence=persistence(client))
    skill.execute({"n": 1}, SkillContext("t"))
    skill.execute({"n": 1}, SkillContext("t"))
    assert skill.effects == 2


def test_defaults_are_normalised_before_comparing_arguments(client: Any) -> None:
    kv = KvStoreSkill(kv=KvTable(KV_TABLE, client), persistence=persistence(client))
    ctx = SkillContext("t", idempotency_key="op-1")
    kv.execute({"op": "set", "key": "k", "value": 1}, ctx)
    # The same call spelled with its default namespace is not a conflict: it is the stored result.
    again = kv.execute({"op": "set", "key": "k", "value": 1, "namespace": "default"}, ctx)
    assert again["found"] is True
    raw = client.get_item(TableName=KV_TABLE, Key={"pk": {"S": "t#default#k"}})["Item"]
    assert raw["version"] == {"N": "1"}  # written once


def test_a_kv_compare_and_set_redelivered_returns_its_first_outcome(client: Any) -> None:
    kv = KvStoreSkill(kv=KvTable(KV_TABLE, client), persistence=persistence(client))
    ctx = SkillContext("t", idempotency_key="cas-op")
    args = {"op": "cas", "key": "lock", "expected": None, "value": "me"}
    assert kv.execute(args, ctx)["swapped"] is True
    # Without idempotency the repeat would lose (the value is no longer absent); with it, the op happened once.
    assert kv.execute(args, ctx)["swapped"] is True


class Gate(IdempotentSkill):
    """Holds its effect open until released, reporting the idempotency record it runs under."""

    name: ClassVar[str] = "gate"
    version: ClassVar[str] = "0.1.0"
    Input: ClassVar[type[BaseModel]] = Args
    Output: ClassVar[type[BaseModel]] = Result
    deterministic: ClassVar[bool] = True

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client, self.entered, self.release = client, threading.Event(), threading.Event()
        self.records: list[dict[str, Any]] = []

    def run(self, data: Args, ctx: SkillContext) -> Result:
        self.records = self.client.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
        self.entered.set()
        self.release.wait(5)
        return Result(doubled=data.n * 2, effect=1)


def test_a_concurrent_call_with_the_same_key_is_told_to_retry(client: Any) -> None:
    skill, ctx = Gate(client, persistence=persistence(client)), SkillContext("t", idempotency_key="op-1")
    first = threading.Thread(target=skill.execute, args=({"n": 1}, ctx))
    first.start()
    assert skill.entered.wait(5)
    try:
        with pytest.raises(IdempotencyInProgress) as caught:
            skill.execute({"n": 1}, ctx)
        assert caught.value.retryable
    finally:
        skill.release.set()
        first.join()


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 7000


def test_the_in_progress_record_ends_with_the_lambda_invocation(client: Any) -> None:
    skill = Gate(client, persistence=persistence(client))
    skill.release.set()
    register_lambda_context(Context())
    try:
        before = time.time() * 1000
        skill.execute({"n": 1}, SkillContext("t", idempotency_key="op-2"))
    finally:
        register_lambda_context(None)
    expiry = int(skill.records[0]["in_progress_expiration"]["N"])
    assert before + 6000 <= expiry <= time.time() * 1000 + 7000  # not the 7-day record expiry


def test_outside_lambda_the_in_progress_record_lasts_the_skills_budget(client: Any) -> None:
    skill = Gate(client, persistence=persistence(client))
    skill.release.set()
    before = time.time() * 1000
    skill.execute({"n": 1}, SkillContext("t", idempotency_key="op-3"))
    expiry = int(skill.records[0]["in_progress_expiration"]["N"])
    assert before + skill.call_budget_s() * 1000 - 1000 <= expiry <= time.time() * 1000 + skill.call_budget_s() * 1000
