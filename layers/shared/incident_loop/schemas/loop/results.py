"""What Bridges 1 and 2 produce: the pattern an incident matched, and the recovery suggested for it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from incident_loop.schemas.loop.base import LoopModel, json_field, new_id
from incident_loop.schemas.loop.confidence import ConfidenceBand, ConfidenceCalculator
from incident_loop.schemas.loop.enums import RecoveryStatus, SuggestionType


class PatternMatchResult(LoopModel):
    """Result of Bridge 1: Incident -> Failure Catalog."""

    incident_id: str
    pattern_id: str | None = None
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    is_new_pattern: bool = False
    matched: bool
    signature_hash: str
    match_details: dict[str, Any] = Field(default_factory=dict)

    _check_details = json_field("match_details")

    @classmethod
    def from_match(
        cls,
        incident_id: str,
        pattern_id: str,
        confidence: float,
        signature_hash: str,
        is_new_pattern: bool = False,
        match_details: dict[str, Any] | None = None,
    ) -> PatternMatchResult:
        """A match to `pattern_id`, banded by its confidence."""
        return cls(
            incident_id=incident_id,
            pattern_id=pattern_id,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            is_new_pattern=is_new_pattern,
            matched=True,
            signature_hash=signature_hash,
            match_details=match_details or {},
        )

    @classmethod
    def no_match(cls, incident_id: str, signature_hash: str, reason: str) -> PatternMatchResult:
        """No pattern matched: confidence 0, NOVEL, with the reason in match_details."""
        return cls(
            incident_id=incident_id,
            pattern_id=None,
            confidence=0.0,
            confidence_band=ConfidenceBand.NOVEL,
            matched=False,
            signature_hash=signature_hash,
            match_details={"reason": reason},
        )

    def should_auto_proceed(self) -> bool:
        """True when the match is strong enough to go on without a person."""
        return self.matched and self.confidence_band.allows_auto_apply()


class RecoverySuggestion(LoopModel):
    """Result of Bridge 2: Pattern -> Recovery. Status: pending -> approved -> applied, or rejected."""

    recovery_id: str
    incident_id: str
    pattern_id: str
    suggestion_type: SuggestionType
    confidence: float = Field(ge=0, le=1)
    confidence_band: ConfidenceBand
    action_type: str
    action_params: dict[str, Any] = Field(default_factory=dict)
    status: RecoveryStatus = "pending"
    auto_applicable: bool = False
    requires_confirmation: int = Field(default=1, ge=0)
    confirmations_received: int = Field(default=0, ge=0)
    rejection_reason: str | None = None

    _check_params = json_field("action_params")

    @classmethod
    def create(
        cls,
        incident_id: str,
        pattern_id: str,
        suggestion_type: SuggestionType,
        confidence: float,
        action_type: str,
        action_params: dict[str, Any],
        occurrence_count: int,
        rejected_last: bool = False,
        match_confidence: float | None = None,
    ) -> RecoverySuggestion:
        """A suggestion; approved at once when ConfidenceCalculator says it may be auto-applied and the incident
        matched its pattern strongly (`match_confidence` in the STRONG_MATCH band: seed 003, only a strong match
        proceeds without a person; None, not known, is not strong), unless the last time a person decided on
        this action for the pattern they rejected it (`rejected_last`): then it asks a person again, whatever its
        confidence. One that waits for a person needs at least one confirmation."""
        strong_match = match_confidence is not None and ConfidenceBand.from_confidence(
            match_confidence).allows_auto_apply()
        auto = (ConfidenceCalculator.should_auto_apply(confidence, occurrence_count) and strong_match
                and not rejected_last)
        level = ConfidenceCalculator.get_confirmation_level(confidence, occurrence_count)
        return cls(
            recovery_id=new_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type=suggestion_type,
            confidence=confidence,
            confidence_band=ConfidenceBand.from_confidence(confidence),
            action_type=action_type,
            action_params=action_params,
            status="approved" if auto else "pending",
            auto_applicable=auto,
            requires_confirmation=0 if auto else max(level, 1),
        )

    @classmethod
    def none_available(cls, incident_id: str, pattern_id: str, reason: str) -> RecoverySuggestion:
        """No recovery could be suggested: a rejected "none" suggestion carrying the reason."""
        return cls(
            recovery_id=new_id("rec"),
            incident_id=incident_id,
            pattern_id=pattern_id,
            suggestion_type="none",
            confidence=0.0,
            confidence_band=ConfidenceBand.NOVEL,
            action_type="none",
            status="rejected",
            requires_confirmation=0,
            rejection_reason=reason,
        )

    def add_confirmation(self) -> None:
        """Count a person's confirmation; enough of them approve a pending recovery."""
        self.confirmations_received += 1
        if self.status == "pending" and self.confirmations_received >= self.requires_confirmation:
            self.status = "approved"

    def reject(self, reason: str) -> None:
        """Reject the recovery with a reason."""
        self.status = "rejected"
        self.rejection_reason = reason

    def mark_applied(self) -> None:
        """Record that the recovery ran; only an approved (or already applied) recovery may."""
        if self.status not in ("approved", "applied"):
            raise ValueError(f"recovery {self.recovery_id} is {self.status}, not approved")
        self.status = "applied"
