"""kv_store on DynamoDB (moto in-process): ops, tenancy, TTL, compare-and-set, size limits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import SizeLimitExceeded, SkillInputError
from incident_loop.skills.kv_store import KvStoreSkill
from incident_loop.skills.kvtable import MAX_KEY_BYTES, MAX_VALUE_BYTES, KvTable
from incident_loop_dev.fakes.aws import KV_TABLE, serialized_item_writes
from incident_loop_dev.fakes.transport import FakeClock

A, B = SkillContext("tenant-a"), SkillContext("tenant-b")


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kv(client: Any, clock: FakeClock) -> KvStoreSkill:
    # No idempotency key in these calls: the idempotency store is never asked.
    return KvStoreSkill(kv=KvTable(KV_TABLE, client, clock), persistence=object(), clock=clock)  # type: ignore[arg-type]


def test_set_then_get_returns_the_value(kv: KvStoreSkill) -> None:
    written = kv.execute({"op": "set", "key": "user:1", "value": {"name": "Ada", "n": [1, 2]}}, A)
    read = kv.execute({"op": "get", "key": "user:1"}, A)
    assert written["found"] and read == {"op": "get", "namespace": "default", "key": "user:1", "found": True,
                                         "value": {"name": "Ada", "n": [1, 2]}, "swapped": None, "expires_at": None}


def test_a_missing_key_is_not_found(kv: KvStoreSkill) -> None:
    assert kv.execute({"op": "get", "key": "nothing"}, A)["found"] is False


def test_tenants_and_namespaces_do_not_see_each_other(kv: KvStoreSkill) -> None:
    kv.execute({"op": "set", "key": "k", "value": "a's"}, A)
    kv.execute({"op": "set", "key": "k", "value": "b's", "namespace": "other"}, B)
    assert kv.execute({"op": "get", "key": "k"}, A)["value"] == "a's"
    assert kv.execute({"op": "get", "key": "k"}, B)["found"] is False
    assert kv.execute({"op": "get", "key": "k", "namespace": "other"}, B)["value"] == "b's"
    assert kv.execute({"op": "get", "key": "k", "namespace": "other"}, A)["found"] is False


def test_delete_reports_whether_the_key_was_there(kv: KvStoreSkill) -> None:
    kv.execute({"op": "set", "key": "k", "value": 1}, A)
    assert kv.execute({"op": "delete", "key": "k"}, A)["found"] is True
    assert kv.execute({"op": "delete", "key": "k"}, A)["found"] is False
    assert kv.execute({"op": "get", "key": "k"}, A)["found"] is False


def test_an_expired_value_reads_as_absent_before_dynamodb_deletes_it(kv: KvStoreSkill, client: Any,
                                                                     clock: FakeClock) -> None:
    written = kv.execute({"op": "set", "key": "session", "value": "s1", "ttl_seconds": 10}, A)
    assert written["expires_at"] == int(clock.now) + 10
    clock.advance(9)
    assert kv.execute({"op": "get", "key": "session"}, A)["value"] == "s1"
    clock.advance(2)
    assert kv.execute({"op": "get", "key": "session"}, A)["found"] is False
    raw = client.get_item(TableName=KV_TABLE, Key={"pk": {"S": "tenant-a#default#session"}})
    assert raw["Item"]["expires_at"] == {"N": str(int(written["expires_at"]))}  # still stored: TTL is lazy


def test_set_without_ttl_clears_an_earlier_ttl(kv: KvStoreSkill, clock: FakeClock) -> None:
    kv.execute({"op": "set", "key": "k", "value": 1, "ttl_seconds": 5}, A)
    kv.execute({"op": "set", "key": "k", "value": 2}, A)
    clock.advance(60)
    assert kv.execute({"op": "get", "key": "k"}, A)["value"] == 2


def test_compare_and_set_swaps_only_on_the_expected_value(kv: KvStoreSkill) -> None:
    assert kv.execute({"op": "cas", "key": "c", "expected": None, "value": 1}, A)["swapped"] is True
    lost = kv.execute({"op": "cas", "key": "c", "expected": None, "value": 9}, A)
    assert lost["swapped"] is False and lost["value"] == 1  # the loser sees what is there
    assert kv.execute({"op": "cas", "key": "c", "expected": 1, "value": 2}, A)["swapped"] is True
    assert kv.execute({"op": "cas", "key": "c", "expected": 1, "value": 3}, A)["swapped"] is False
    assert kv.execute({"op": "get", "key": "c"}, A)["value"] == 2


def test_compare_and_set_compares_json_values_not_their_key_order(kv: KvStoreSkill) -> None:
    kv.execute({"op": "set", "key": "doc", "value": {"a": 1, "b": 2}}, A)
    assert kv.execute({"op": "cas", "key": "doc", "expected": {"b": 2, "a": 1}, "value": {"a": 2}}, A)["swapped"]


def test_an_expired_value_counts_as_absent_for_compare_and_set(kv: KvStoreSkill, clock: FakeClock) -> None:
    kv.execute({"op": "set", "key": "lock", "value": "old-holder", "ttl_seconds": 30}, A)
    assert kv.execute({"op": "cas", "key": "lock", "expected": None, "value": "new-holder"}, A)["swapped"] is False
    clock.advance(31)
    taken = kv.execute({"op": "cas", "key": "lock", "expected": None, "value": "new-holder"}, A)
    assert taken["swapped"] is True and taken["value"] == "new-holder"


def test_two_racing_compare_and_sets_have_one_winner(client: Any, clock: FakeClock) -> None:
    skills = [KvStoreSkill(kv=KvTable(KV_TABLE, client, clock), persistence=object(),  # type: ignore[arg-type]
                           clock=clock) for _ in range(2)]
    skills[0].execute({"op": "set", "key": "counter", "value": 0}, A)
    barrier, results = threading.Barrier(2), []

    def writer(skill: KvStoreSkill, value: int) -> None:
        barrier.wait()
        results.append(skill.execute({"op": "cas", "key": "counter", "expected": 0, "value": value}, A))

    threads = [threading.Thread(target=writer, args=(skill, i + 1)) for i, skill in enumerate(skills)]
    with serialized_item_writes():  # DynamoDB's per-item guarantee, which moto lacks
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    winners = [r for r in results if r["swapped"]]
    assert len(results) == 2 and len(winners) == 1
    assert skills[0].execute({"op": "get", "key": "counter"}, A)["value"] == winners[0]["value"]


def test_a_key_over_the_limit_is_refused_with_its_size(kv: KvStoreSkill) -> None:
    kv.execute({"op": "set", "key": "k" * MAX_KEY_BYTES, "value": 1}, A)  # at the limit: fine
    with pytest.raises(SizeLimitExceeded, match=f"{MAX_KEY_BYTES + 1} bytes"):
        kv.execute({"op": "set", "key": "k" * (MAX_KEY_BYTES + 1), "value": 1}, A)


def test_a_multibyte_key_is_measured_in_bytes(kv: KvStoreSkill) -> None:
    with pytest.raises(SizeLimitExceeded):
        kv.execute({"op": "get", "key": "é" * (MAX_KEY_BYTES // 2 + 1)}, A)


def test_a_value_over_the_limit_is_refused_before_any_write(kv: KvStoreSkill) -> None:
    with pytest.raises(SizeLimitExceeded, match=f"limit is {MAX_VALUE_BYTES} bytes"):
        kv.execute({"op": "set", "key": "big", "value": "x" * MAX_VALUE_BYTES}, A)
    assert kv.execute({"op": "get", "key": "big"}, A)["found"] is False


@pytest.mark.parametrize("args", [
    {"op": "get", "key": "k", "namespace": "_webhook_endpoints"},
    {"op": "get", "key": "k", "namespace": "has#hash"},
    {"op": "set", "key": "k", "value": 1, "ttl_seconds": 0},
    {"op": "get", "key": ""},
    {"op": "cas", "key": "k", "value": None, "expected": 1},
])
def test_reserved_namespaces_and_bad_arguments_are_refused(kv: KvStoreSkill, args: dict) -> None:
    with pytest.raises(SkillInputError):
        kv.execute(args, A)
