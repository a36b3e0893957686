"""voyage_embed: batching to the API's limits, the kv cache, the request it sends, bad answers.
Scripted transport answering like Voyage, moto in-process for the cache and breakers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from incident_loop.settings import Settings
from incident_loop.skills import metrics
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import ExternalError, SizeLimitExceeded, SkillError
from incident_loop.skills.idempotency import STORED_RESULT_LIMIT
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.voyage_embed import (
    MAX_TEXT_BYTES,
    TOKEN_CAPS,
    VoyageEmbedSkill,
    batches,
    cache_key,
    estimate_tokens,
)
from incident_loop_dev.fakes.aws import IDEMPOTENCY_TABLE, KV_TABLE, skill_breakers
from incident_loop_dev.fakes.emf import total
from incident_loop_dev.fakes.transport import FakeClock, ScriptedTransport, response
from incident_loop_dev.fakes.voyage import embedding

CTX = SkillContext("tenant-a")


def voyage(dimensions: int = 4) -> Any:
    def answer(request: Any) -> Any:
        body = json.loads(request.body)
        data = [{"object": "embedding", "index": i,
                 "embedding": embedding(body["model"], body["input_type"], text, dimensions)}
                for i, text in enumerate(body["input"])]
        return response(200, {"object": "list", "data": list(reversed(data)), "model": body["model"],
                              "usage": {"total_tokens": len(data)}})

    return answer


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


def make(client: Any, transport: ScriptedTransport, **settings: Any) -> VoyageEmbedSkill:
    clock = FakeClock()
    config = Settings(**{"voyage_base_url": "https://voyage.example", "voyage_api_key_parameter": "/voyage/key",
                         **settings})
    return VoyageEmbedSkill(kv=KvTable(KV_TABLE, client, clock), transport=transport, clock=clock, sleep=clock.sleep,
                            breaker_for=skill_breakers(client, clock=clock), settings=config,
                            secret_source={"/voyage/key": "pa-123"}.__getitem__,
                            persistence=DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=client))


def inputs_of(transport: ScriptedTransport) -> list[list[str]]:
    return [json.loads(r.body or b"")["input"] for r in transport.requests]


def test_1001_inputs_make_two_requests_of_1000_and_1() -> None:
    assert [len(b) for b in batches([f"t{i}" for i in range(1001)], 10**9)] == [1000, 1]


def test_batches_stay_under_the_models_token_cap() -> None:
    texts = ["x" * 50_000] * 5
    cut = batches(texts, TOKEN_CAPS["voyage-3-large"])
    assert [len(b) for b in cut] == [2, 2, 1]
    assert all(sum(estimate_tokens(t) for t in b) <= 120_000 for b in cut)


def test_a_text_over_the_cap_goes_alone() -> None:
    assert [len(b) for b in batches(["a", "x" * 200, "b"], 100)] == [1, 1, 1]


def test_token_estimates_are_an_upper_bound_in_bytes() -> None:
    assert estimate_tokens("héllo") == len("héllo".encode()) + 2


def test_the_skill_sends_two_requests_for_1001_texts_and_none_on_a_repeat(client: Any) -> None:
    transport = ScriptedTransport(default=voyage())
    skill = make(client, transport)
    texts = [f"incident {i}" for i in range(1001)]
    first = skill.execute({"texts": texts, "input_type": "document"}, CTX)
    assert [len(batch) for batch in inputs_of(transport)] == [1000, 1]
    assert first["embeddings"][1000] == embedding("voyage-3.5", "document", "incident 1000", 4)  # in input order
    assert (first["model"], first["dimensions"], len(first["embeddings"])) == ("voyage-3.5", 4, 1001)
    again = skill.execute({"texts": texts, "input_type": "document"}, CTX)
    assert again == first and len(transport.requests) == 2  # all 1001 from the cache


def test_the_request_is_voyages_shape_with_the_bearer_key(client: Any) -> None:
    transport = ScriptedTransport(default=voyage())
    make(client, transport).execute({"texts": ["a"], "model": "voyage-3-large", "input_type": "query"}, CTX)
    request = transport.requests[0]
    assert request.url == "https://voyage.example/v1/embeddings"
    assert request.headers["authorization"] == "Bearer pa-123"
    assert json.loads(request.body or b"") == {"model": "voyage-3-large", "input": ["a"], "input_type": "query"}


def test_only_uncached_and_distinct_texts_are_sent(client: Any) -> None:
    transport = ScriptedTransport(default=voyage())
    skill = make(client, transport)
    skill.execute({"texts": ["a", "b"]}, CTX)
    out = skill.execute({"texts": ["b", "c", "c", "a", "d"]}, CTX)
    assert inputs_of(transport) == [["a", "b"], ["c", "d"]]
    assert out["embeddings"][1] == out["embeddings"][2] == embedding("voyage-3.5", None, "c", 4)


def test_the_cache_is_keyed_by_model_and_input_type(client: Any) -> None:
    transport = ScriptedTransport(default=voyage())
    skill = make(client, transport)
    skill.execute({"texts": ["same"], "input_type": "query"}, CTX)
    skill.execute({"texts": ["same"], "input_type": "document"}, CTX)
    skill.execute({"texts": ["same"], "input_type": "document", "model": "voyage-3-lite"}, CTX)
    assert len(transport.requests) == 3
    assert len({cache_key("m", "query", "t"), cache_key("m", "document", "t"), cache_key("n", "query", "t")}) == 3


def test_a_retryable_failure_is_retried_and_earlier_batches_stay_cached(client: Any) -> None:
    transport = ScriptedTransport(voyage(), response(503), response(503), response(503), default=voyage())
    skill = make(client, transport)
    texts = [f"t{i}" for i in range(1500)]
    with pytest.raises(ExternalError):
        skill.execute({"texts": texts}, CTX)  # the first batch succeeded, the second failed three times
    skill.execute({"texts": texts}, CTX)
    assert [len(batch) for batch in inputs_of(transport)] == [1000, 500, 500, 500, 500]


def test_an_answer_with_the_wrong_number_of_embeddings_is_refused(client: Any) -> None:
    transport = ScriptedTransport(default=response(200, {"data": [{"index": 0, "embedding": [0.1]}]}))
    with pytest.raises(ExternalError) as caught:
        make(client, transport).execute({"texts": ["a", "b"]}, CTX)
    assert caught.value.code == "voyage_bad_response" and not caught.value.retryable


def test_without_an_api_key_parameter_it_is_not_configured(client: Any) -> None:
    with pytest.raises(SkillError) as caught:
        make(client, ScriptedTransport(), voyage_api_key_parameter=None).execute({"texts": ["a"]}, CTX)
    assert caught.value.code == "not_configured"


def test_an_oversized_text_is_refused(client: Any) -> None:
    with pytest.raises(SizeLimitExceeded, match="texts\\[1\\]"):
        make(client, ScriptedTransport()).execute({"texts": ["ok", "x" * (MAX_TEXT_BYTES + 1)]}, CTX)


def test_a_result_too_large_to_store_is_recomputed_from_the_cache_on_a_hit(client: Any,
                                                                          capsys: pytest.CaptureFixture) -> None:
    transport = ScriptedTransport(default=voyage(dimensions=48))
    skill = make(client, transport)
    ctx = SkillContext("tenant-a", idempotency_key="embed-op")
    texts = [f"line {i}" for i in range(1001)]
    first = skill.execute({"texts": texts}, ctx)
    assert len(json.dumps(first)) > STORED_RESULT_LIMIT
    assert skill.execute({"texts": texts}, ctx) == first
    assert len(transport.requests) == 2  # the repeat made no request
    assert total(capsys.readouterr().out, metrics.IDEMPOTENCY_HITS, skill="voyage_embed") == 1
