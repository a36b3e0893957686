"""voyage_embed at the real API's sizes: a real HTTP server on 127.0.0.1 (FakeVoyage) with voyage-3.5's
default 1,024 dimensions instead of the fake's 8, the real urllib3 transport, moto in-process for the kv table."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from incident_loop.settings import Settings
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import SizeLimitExceeded
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.transport import Urllib3Transport
from incident_loop.skills.voyage_embed import VoyageEmbedSkill
from incident_loop_dev.fakes import FakeVoyage
from incident_loop_dev.fakes.aws import IDEMPOTENCY_TABLE, KV_TABLE, skill_breakers


def _skill(skill_tables: Any, voyage: FakeVoyage) -> VoyageEmbedSkill:
    return VoyageEmbedSkill(
        kv=KvTable(KV_TABLE, skill_tables), transport=Urllib3Transport(), breaker_for=skill_breakers(skill_tables),
        settings=Settings(voyage_base_url=voyage.url, voyage_api_key_parameter="/voyage/key"),
        secret_source=lambda name: voyage.api_key,
        persistence=DynamoDBPersistenceLayer(table_name=IDEMPOTENCY_TABLE, boto3_client=skill_tables))


def test_two_hundred_texts_at_1024_dimensions_embed_in_one_request(skill_tables: Any) -> None:
    """200 short texts are one request; its answer (200 x 1,024 floats, about 2 MB of JSON) was cut at the
    transport's 1 MiB, did not parse, and failed as voyage_bad_response: no call of more than about 50 new texts
    ever succeeded."""
    with FakeVoyage(dimensions=1024) as voyage:
        texts = [f"disk full on node-{i}" for i in range(200)]
        out = _skill(skill_tables, voyage).execute({"texts": texts, "input_type": "document"}, SkillContext("tenant-a"))
    assert voyage.batch_sizes == [200]
    assert len(out["embeddings"]) == 200 and out["dimensions"] == 1024


def test_a_call_whose_embeddings_would_not_fit_an_op_is_refused_and_its_texts_are_cached_for_smaller_steps(
        skill_tables: Any) -> None:
    """A result is recorded in the op and returned by GET /workflows/{id}: a call returns at most 4 MiB of
    embeddings. 600 vectors of 1,024 are more (about 6 MB here): refused (not retryable), what was fetched cached,
    so the same texts in three steps cost no request."""
    texts = [f"disk full on node-{i}" for i in range(600)]
    with FakeVoyage(dimensions=1024) as voyage:
        skill = _skill(skill_tables, voyage)
        with pytest.raises(SizeLimitExceeded, match="embed fewer texts per step") as refused:
            skill.execute({"texts": texts, "input_type": "document"}, SkillContext("tenant-a"))
        assert not refused.value.retryable and voyage.batch_sizes == [600]
        parts = [skill.execute({"texts": texts[i:i + 200], "input_type": "document"}, SkillContext("tenant-a"))
                 for i in (0, 200, 400)]
    assert voyage.batch_sizes == [600]  # no request more
    assert [len(part["embeddings"]) for part in parts] == [200, 200, 200]
