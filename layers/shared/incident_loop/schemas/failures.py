"""Records of the failure queues."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json

from incident_loop.failures.persist import FailureIn
from incident_loop.failures.store import FailureRecord


class FailureInRecord(SqsRecordModel):
    """The runtime's failure queue: one failure to match and persist."""

    body: Json[FailureIn]  # type: ignore[assignment]


class ParkedFailureRecord(SqsRecordModel):
    """The retry queue: a matched failure that could not be written in time."""

    body: Json[FailureRecord]  # type: ignore[assignment]
