"""The committed OpenAPI document is the one the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from incident_loop_dev.openapi import document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_document_matches_the_code() -> None:
    assert COMMITTED.read_text() == document(), "docs/openapi.json drifted: run `make openapi` and commit it"


def test_openapi_document_lists_every_loop_route() -> None:
    paths = json.loads(document())["paths"]
    assert {
        "/incidents", "/loops/{incident_id}", "/checkpoints", "/checkpoints/{checkpoint_id}/resolve", "/policies",
        "/policies/{policy_id}/confirm", "/policies/{policy_id}/regret", "/routing/{agent_id}", "/graduation",
    } <= set(paths)
    assert "requestBody" in paths["/incidents"]["post"]
