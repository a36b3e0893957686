"""State the skills share across containers, on moto's server over HTTP and the real PostgreSQL: the shared
breaker per target, the kv table under racing writers, the embedding cache, the idempotency records."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.rows import dict_row

from incident_loop.breaker import DynamoBreakerStore
from incident_loop.skills import registry
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import CircuitOpen, ExternalError
from incident_loop.skills.kv_store import KvStoreSkill
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.signing import new_secret
from incident_loop_dev.fakes import FakeVoyage, FakeWebhookReceiver
from incident_loop_dev.fakes.aws import put_parameter, reset_skill_caches, serialized_item_writes, skill_tables_env
from incident_loop_dev.local.services import moto_server

SECRET = new_secret()
WRITERS = 8


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def env(endpoint: str, loop_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto's server, fresh tables, the test database (breaker history), 127.0.0.1 allow-listed."""
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    names = skill_tables_env(dynamodb, uuid.uuid4().hex[:8])
    values = {**names, "AWS_ENDPOINT_URL": endpoint, "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
              "WEBHOOK_RETRY_SCALE": "0.0001", "SKILL_READ_TIMEOUT_S": "0.5", "SKILL_MAX_WAIT_S": "5"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_skill_caches()
    yield {"dynamodb": dynamodb, "endpoint": endpoint, **names}
    reset_skill_caches()


def history(admin_db_url: str, name: str) -> list[tuple[str, str]]:
    with psycopg.connect(admin_db_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT from_state, to_state FROM breaker_history WHERE breaker_name = %s "
                            "ORDER BY version", (name,)).fetchall()
    return [(r["from_state"], r["to_state"]) for r in rows]


def test_the_shared_breaker_opens_after_five_failures_on_one_target_while_another_works(
        env: dict[str, Any], admin_db_url: str) -> None:
    skill = registry.get("webhook_send")
    with FakeWebhookReceiver(secrets=[SECRET]) as down, FakeWebhookReceiver(secrets=[SECRET]) as up:
        down.fail(500, times=100)
        outcomes = []
        for i in range(3):
            with pytest.raises((ExternalError, CircuitOpen)) as caught:
                skill.execute({"url": down.url, "payload": {"i": i}, "secrets": [SECRET]},
                              SkillContext("tenant-a", idempotency_key=f"down-{i}"))
            outcomes.append(caught.value.code)
        delivered = skill.execute({"url": up.url, "payload": {"ok": True}, "secrets": [SECRET]},
                                  SkillContext("tenant-a", idempotency_key="up-1"))
    assert len(down.calls) == 5 and outcomes[-1] == "circuit_open"  # the third send made no request
    assert delivered["status_code"] == 200 and len(up.effects) == 1
    down_name = f"skill:tenant-a/webhook:127.0.0.1:{down.url.rsplit(':', 1)[1]}"
    up_name = f"skill:tenant-a/webhook:127.0.0.1:{up.url.rsplit(':', 1)[1]}"
    store = DynamoBreakerStore(env["BREAKERS_TABLE"], env["dynamodb"])
    record = store.get(down_name)
    assert record is not None and record.state.value == "OPEN" and record.consecutive_failures >= 5
    assert record.cooldown_until is not None and record.opened_at is not None
    assert record.cooldown_until - record.opened_at == pytest.approx(60.0)  # seed 004's cooldown
    assert store.get(up_name).state.value == "CLOSED"  # type: ignore[union-attr]
    assert history(admin_db_url, down_name) == [("CLOSED", "OPEN")]


def test_one_tenants_failing_endpoint_refuses_no_other_tenants_sends_to_the_same_host(
        env: dict[str, Any], admin_db_url: str) -> None:
    """A webhook platform serves many tenants from one host: tenant A's endpoint answering 5xx opens A's breaker
    on that host, and tenant B's sends to the same host still go out (they were refused when the breaker was the
    host's)."""
    skill = registry.get("webhook_send")
    with FakeWebhookReceiver(secrets=[SECRET]) as host:
        host.fail(500, times=5)  # A's five attempts; the host answers normally after
        for i in range(3):
            with pytest.raises((ExternalError, CircuitOpen)):
                skill.execute({"url": f"{host.url}/a", "payload": {"i": i}, "secrets": [SECRET]},
                              SkillContext("tenant-a", idempotency_key=f"a-{i}"))
        delivered = skill.execute({"url": f"{host.url}/b", "payload": {"to": "b"}, "secrets": [SECRET]},
                                  SkillContext("tenant-b", idempotency_key="b-1"))
        with pytest.raises(CircuitOpen):  # A's breaker is still open: A's next send makes no request
            skill.execute({"url": f"{host.url}/a", "payload": {"i": 3}, "secrets": [SECRET]},
                          SkillContext("tenant-a", idempotency_key="a-3"))
        calls = len(host.calls)
    assert delivered["status_code"] == 200 and list(host.effects.values()) == [{"to": "b"}]
    assert calls == 6  # A's five failures and B's one delivery
    netloc = host.url.split("//", 1)[1]
    store = DynamoBreakerStore(env["BREAKERS_TABLE"], env["dynamodb"])
    assert store.get(f"skill:tenant-a/webhook:{netloc}").state.value == "OPEN"  # type: ignore[union-attr]
    assert store.get(f"skill:tenant-b/webhook:{netloc}").state.value == "CLOSED"  # type: ignore[union-attr]
    assert store.get(f"skill:webhook:{netloc}") is None  # no breaker of the host itself
    assert history(admin_db_url, f"skill:tenant-a/webhook:{netloc}") == [("CLOSED", "OPEN")]


def test_racing_compare_and_sets_from_separate_containers_have_one_winner(env: dict[str, Any]) -> None:
    def container() -> KvStoreSkill:
        client = boto3.session.Session().client("dynamodb", endpoint_url=env["endpoint"], region_name="us-east-1")
        return KvStoreSkill(kv=KvTable(env["KV_TABLE"], client))

    skills = [container() for _ in range(WRITERS)]
    skills[0].execute({"op": "set", "key": "leader", "value": "none"}, SkillContext("tenant-a"))
    barrier, results, lock = threading.Barrier(WRITERS), [], threading.Lock()

    def elect(index: int) -> None:
        barrier.wait()
        out = skills[index].execute({"op": "cas", "key": "leader", "expected": "none", "value": f"w{index}"},
                                    SkillContext("tenant-a"))
        with lock:
            results.append(out)

    threads = [threading.Thread(target=elect, args=(i,)) for i in range(WRITERS)]
    with serialized_item_writes():  # DynamoDB's per-item guarantee, which moto's server lacks
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    winners = [r["value"] for r in results if r["swapped"]]
    assert len(results) == WRITERS and len(winners) == 1
    assert {r["value"] for r in results} == set(winners)  # every loser saw the winner's value
    assert skills[1].execute({"op": "get", "key": "leader"}, SkillContext("tenant-a"))["value"] == winners[0]


def test_a_redelivered_kv_op_is_applied_once(env: dict[str, Any]) -> None:
    kv = registry.get("kv_store")
    ctx = SkillContext("tenant-a", workflow_run_id="run-1", op_index=0)
    results = [kv.execute({"op": "cas", "key": "slot", "expected": None, "value": "first"}, ctx) for _ in range(3)]
    assert [r["swapped"] for r in results] == [True, True, True]  # the stored outcome, not three attempts
    raw = env["dynamodb"].get_item(TableName=env["KV_TABLE"], Key={"pk": {"S": "tenant-a#default#slot"}})["Item"]
    assert raw["version"] == {"N": "1"}


def test_voyage_batches_1001_texts_into_two_requests_and_a_repeat_costs_none(env: dict[str, Any],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ssm = boto3.client("ssm", endpoint_url=env["endpoint"], region_name="us-east-1")
    with FakeVoyage() as voyage:
        monkeypatch.setenv("VOYAGE_BASE_URL", voyage.url)
        monkeypatch.setenv("VOYAGE_API_KEY_PARAMETER", put_parameter(ssm, "/voyage/key", voyage.api_key))
        reset_skill_caches()
        skill = registry.get("voyage_embed")
        texts = [f"incident {i}" for i in range(1001)]
        first = skill.execute({"texts": texts, "input_type": "document"}, SkillContext("tenant-a"))
        again = skill.execute({"texts": texts, "input_type": "document"}, SkillContext("tenant-a"))
    assert voyage.requests == 2 and voyage.batch_sizes == [1000, 1] and voyage.inputs == 1001
    assert again == first and len(first["embeddings"]) == 1001 and first["dimensions"] == voyage.dimensions


def test_a_stalled_voyage_request_times_out_and_is_retried(env: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ssm = boto3.client("ssm", endpoint_url=env["endpoint"], region_name="us-east-1")
    with FakeVoyage() as voyage:
        monkeypatch.setenv("VOYAGE_BASE_URL", voyage.url)
        monkeypatch.setenv("VOYAGE_API_KEY_PARAMETER", put_parameter(ssm, "/voyage/key2", voyage.api_key))
        reset_skill_caches()
        voyage.stall(1.5)
        out = registry.get("voyage_embed").execute({"texts": ["slow"]}, SkillContext("tenant-a"))
    assert len(voyage.calls) == 2 and len(out["embeddings"]) == 1


def test_a_wrong_voyage_key_is_the_callers_error(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ssm = boto3.client("ssm", endpoint_url=env["endpoint"], region_name="us-east-1")
    with FakeVoyage() as voyage:
        monkeypatch.setenv("VOYAGE_BASE_URL", voyage.url)
        monkeypatch.setenv("VOYAGE_API_KEY_PARAMETER", put_parameter(ssm, "/voyage/bad", "pa-wrong"))
        reset_skill_caches()
        with pytest.raises(ExternalError) as caught:
            registry.get("voyage_embed").execute({"texts": ["x"]}, SkillContext("tenant-a"))
    assert caught.value.code == "http_401" and not caught.value.retryable and len(voyage.calls) == 1
