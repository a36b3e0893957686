"""The boundary models: incidents as reported, and the envelope every queue carries."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from incident_loop.schemas.envelope import Envelope, EnvelopeRecord
from incident_loop.schemas.incident import IncidentIn, IncidentRecord
from incident_loop.schemas.loop.enums import LoopStage

VALID = {"agent_id": "a", "run_id": "r", "error_type": "SkillTimeoutError", "error_message": "timed out"}


def test_incident_key_is_derived_from_what_identifies_the_failure() -> None:
    one = IncidentIn(**VALID)
    same = IncidentIn(**VALID, context={"anything": 1})
    other_run = IncidentIn(**{**VALID, "run_id": "r2"})
    assert one.derived_key() == same.derived_key()
    assert one.derived_key() != other_run.derived_key()


def test_fields_holding_the_separator_never_give_two_incidents_one_key() -> None:
    """The key joins the fields with a control character a client may send inside one: the incidents
    ("a\x1fb", "c") and ("a", "b\x1fc") differ and keep different keys; others keep the key they had."""
    one = IncidentIn(**{**VALID, "agent_id": "agent-a\x1frun-1", "run_id": "run-2"})
    two = IncidentIn(**{**VALID, "agent_id": "agent-a", "run_id": "run-1\x1frun-2"})
    assert one.derived_key() != two.derived_key()
    plain = IncidentIn(**VALID)
    joined = "\x1f".join([plain.agent_id, plain.run_id, plain.error_type, plain.error_message])
    assert plain.derived_key() == "k_" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def test_client_supplied_incident_key_wins() -> None:
    assert IncidentIn(**VALID, incident_key="client-42").derived_key() == "client-42"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"error_message": ""}, "error_message"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"error_type": "has spaces"}, "error_type"),
        ({"tenant_id": "sneaky"}, "tenant_id"),
        ({"context": {"blob": "x" * 20_000}}, "context"),
    ],
)
def test_bad_incident_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        IncidentIn(**{**VALID, **change})
    assert field in {str(e["loc"][0]) for e in info.value.errors()}


def test_incident_record_body_must_name_a_tenant() -> None:
    record = {
        "messageId": "m1", "receiptHandle": "h", "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "awsRegion": "us-east-1", "messageAttributes": {},
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "s",
                       "ApproximateFirstReceiveTimestamp": "1"},
        "body": json.dumps(VALID),
    }
    with pytest.raises(ValidationError):
        IncidentRecord.model_validate(record)
    record["body"] = json.dumps({**VALID, "tenant_id": "t1"})
    assert IncidentRecord.model_validate(record).body.tenant_id == "t1"


def test_envelope_round_trips_through_an_sqs_record() -> None:
    env = Envelope(incident_id="inc_1", tenant_id="t", loop_id="loop_1", stage=LoopStage.PATTERN_MATCHED,
                   correlation_id="inc_1", payload={"k": 1})
    record = {
        "messageId": "m1", "receiptHandle": "h", "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "awsRegion": "us-east-1", "messageAttributes": {},
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "s",
                       "ApproximateFirstReceiveTimestamp": "1"},
        "body": env.model_dump_json(),
    }
    assert EnvelopeRecord.model_validate(record).body == env


def test_envelope_next_keeps_identity_and_changes_stage() -> None:
    env = Envelope(incident_id="inc_1", tenant_id="t", loop_id="loop_1", stage=LoopStage.PATTERN_MATCHED,
                   correlation_id="c", attempt=3)
    nxt = env.next(LoopStage.RECOVERY_SUGGESTED, pattern_id="pat_1")
    assert (nxt.incident_id, nxt.tenant_id, nxt.loop_id, nxt.correlation_id) == ("inc_1", "t", "loop_1", "c")
    assert nxt.stage == LoopStage.RECOVERY_SUGGESTED and nxt.attempt == 1 and nxt.payload == {"pattern_id": "pat_1"}
    assert nxt.dedup_key == "inc_1:recovery_suggested"


def test_envelope_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Envelope(incident_id="i", tenant_id="t", loop_id="l", stage="pattern_matched", correlation_id="c",
                 surprise=True)
