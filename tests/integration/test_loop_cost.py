"""What one message costs each stage of the loop, counted, not timed (so the figures do not drift with
the machine): at most 3 PostgreSQL round trips and 3 AWS calls per message over batches of 10, and no
connection per message. The counting is `incident-loop bench loop`'s (dev/incident_loop_dev/bench/loop.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from incident_loop_dev.bench.loop import STAGES, run

INCIDENTS = 30  # three batches of ten through every stage
MAX_ROUND_TRIPS = 3
MAX_AWS_CALLS = 3
MAX_CONNECTIONS = 3  # a stage's function over the whole run: the container's, the catalog read, the write pool


@pytest.fixture(scope="module")
def costs() -> dict[str, Any]:
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return run(INCIDENTS, admin_url=admin)


def test_every_incident_went_through_the_whole_loop(costs: dict[str, Any]) -> None:
    assert (costs["complete"], costs["dead_letters"]) == (INCIDENTS, 0)
    assert all(costs["stages"][stage]["messages"] >= INCIDENTS for stage in STAGES), costs["stages"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_message_costs_at_most_three_round_trips_and_three_aws_calls(costs: dict[str, Any], stage: str) -> None:
    cost = costs["stages"][stage]
    assert cost["pg_round_trips_per_message"] <= MAX_ROUND_TRIPS, cost
    assert cost["aws_calls_per_message"] <= MAX_AWS_CALLS, cost


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_opens_a_connection_per_message(costs: dict[str, Any], stage: str) -> None:
    cost = costs["stages"][stage]
    assert round(cost["connections_per_message"] * cost["messages"]) <= MAX_CONNECTIONS, cost


@pytest.mark.parametrize("stage", STAGES[1:])
def test_a_stage_keeps_no_idempotency_record_and_hands_off_ten_to_a_call(costs: dict[str, Any], stage: str) -> None:
    # The loop_events key and the incident's lock make a stage exactly-once; its only effect outside
    # PostgreSQL is the hand-off, and a repeated hand-off is a replay at the next stage.
    calls = costs["stages"][stage]["aws_calls"]
    assert not [call for call in calls if call.startswith("dynamodb.")], calls
    assert "sqs.SendMessage" not in calls, calls
