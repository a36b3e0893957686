"""The message every loop queue carries: ids and a small payload; large state stays in PostgreSQL."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json

from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.schemas.loop.events import LoopEvent


class Envelope(BaseModel):
    """One unit of loop work: perform `stage` for `incident_id`."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)
    loop_id: str = Field(min_length=1, max_length=64)
    stage: LoopStage
    attempt: int = Field(default=1, ge=1)
    correlation_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        """What makes two messages the same piece of work (the idempotency key)."""
        return f"{self.incident_id}:{self.stage.value}"

    def event(self, stage: LoopStage, details: dict[str, Any], **kwargs: Any) -> LoopEvent:
        """The loop event recording what `stage` did for this envelope's incident."""
        return LoopEvent.create(incident_id=self.incident_id, tenant_id=self.tenant_id, stage=stage,
                                details=details, **kwargs)

    def next(self, stage: LoopStage, **payload: Any) -> Envelope:
        """The envelope that hands this incident to the following stage."""
        return Envelope(
            incident_id=self.incident_id,
            tenant_id=self.tenant_id,
            loop_id=self.loop_id,
            stage=stage,
            correlation_id=self.correlation_id,
            payload=payload,
        )


class EnvelopeRecord(SqsRecordModel):
    """An SQS record whose body is an Envelope (parsed by the batch processor)."""

    body: Json[Envelope]  # type: ignore[assignment]
