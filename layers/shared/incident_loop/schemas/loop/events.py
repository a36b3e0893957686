"""What a stage did for an incident (LoopEvent), and where the loop waits for a person (HumanCheckpoint)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from incident_loop.schemas.loop.base import LoopModel, json_field, new_id, utc_now
from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import HumanCheckpointType, LoopFailureState, LoopStage, is_failure

DEFAULT_CHECKPOINT_OPTIONS = ("approve", "reject", "modify")


class LoopEvent(LoopModel):
    """Base event for integration loop: what one stage did for one incident."""

    event_id: str
    incident_id: str
    tenant_id: str
    stage: LoopStage
    timestamp: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    failure_state: LoopFailureState | None = None
    confidence_band: ConfidenceBand | None = None
    requires_human_review: bool = False

    _check_details = json_field("details")

    @classmethod
    def create(
        cls,
        incident_id: str,
        tenant_id: str,
        stage: LoopStage,
        details: dict[str, Any] | None = None,
        failure_state: LoopFailureState | None = None,
        confidence_band: ConfidenceBand | None = None,
        requires_human_review: bool = False,
    ) -> LoopEvent:
        """A new event; details are made JSON-safe now (TypeError naming the path if they cannot be)."""
        return cls(
            event_id=new_id("evt"),
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            timestamp=utc_now(),
            details=details or {},  # made JSON-safe by the field validator
            failure_state=failure_state,
            confidence_band=confidence_band,
            requires_human_review=requires_human_review,
        )

    @property
    def is_success(self) -> bool:
        """False only for a real failure: shadow mode never stops the loop (seed 000, issue 11)."""
        return not is_failure(self.failure_state)

    @property
    def is_blocked(self) -> bool:
        """True while the loop waits for a person."""
        return self.requires_human_review or self.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL


class HumanCheckpoint(LoopModel):
    """Human intervention point in the loop; resolved once, with one of its options."""

    checkpoint_id: str
    checkpoint_type: HumanCheckpointType
    incident_id: str
    tenant_id: str
    stage: LoopStage
    target_id: str
    description: str
    options: list[str] = Field(default_factory=lambda: list(DEFAULT_CHECKPOINT_OPTIONS), min_length=1)
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None

    @classmethod
    def create(
        cls,
        checkpoint_type: HumanCheckpointType,
        incident_id: str,
        tenant_id: str,
        stage: LoopStage,
        target_id: str,
        description: str,
        options: list[str] | None = None,
    ) -> HumanCheckpoint:
        """A pending checkpoint; options default to approve / reject / modify."""
        return cls(
            checkpoint_id=new_id("chk"),
            checkpoint_type=checkpoint_type,
            incident_id=incident_id,
            tenant_id=tenant_id,
            stage=stage,
            target_id=target_id,
            description=description,
            options=list(DEFAULT_CHECKPOINT_OPTIONS) if options is None else options,
            created_at=utc_now(),
        )

    def resolve(self, resolution: str, resolved_by: str) -> None:
        """Resolve with one of the options; ValueError if already resolved or not an option."""
        if not self.is_pending():
            raise ValueError(f"checkpoint {self.checkpoint_id} is already resolved ({self.resolution})")
        if resolution not in self.options:
            raise ValueError(f"resolution {resolution!r} is not one of {self.options}")
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = utc_now()

    def is_pending(self) -> bool:
        """True until the checkpoint is resolved."""
        return self.resolved_at is None
