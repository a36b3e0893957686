"""How sure the loop is, and what that lets it do: the confidence bands and the ConfidenceCalculator."""

from __future__ import annotations

from enum import Enum

STRONG_MATCH_THRESHOLD = 0.85  # at or above: STRONG_MATCH, may be auto-applied
WEAK_MATCH_THRESHOLD = 0.6  # at or above: WEAK_MATCH; below: NOVEL


class ConfidenceBand(str, Enum):
    """Confidence classification for pattern matching."""

    STRONG_MATCH = "strong_match"
    WEAK_MATCH = "weak_match"
    NOVEL = "novel"

    @classmethod
    def from_confidence(cls, confidence: float) -> ConfidenceBand:
        """STRONG_MATCH at >= 0.85, WEAK_MATCH at >= 0.6, else NOVEL; ValueError outside [0, 1]."""
        if not 0.0 <= confidence <= 1.0:  # also refuses NaN
            raise ValueError(f"confidence {confidence} is outside [0, 1]")
        if confidence >= STRONG_MATCH_THRESHOLD:
            return cls.STRONG_MATCH
        if confidence >= WEAK_MATCH_THRESHOLD:
            return cls.WEAK_MATCH
        return cls.NOVEL

    def allows_auto_apply(self) -> bool:
        """Only a strong match may be acted on without a person."""
        return self is ConfidenceBand.STRONG_MATCH

    def requires_human_review(self) -> bool:
        """Weak matches and novel patterns go to a person."""
        return self is not ConfidenceBand.STRONG_MATCH


class ConfidenceCalculator:
    """Centralized confidence calculation (seed 000, issue 10: confidence grows with occurrences)."""

    EXACT_MATCH_CONFIDENCE = 0.95
    BASE_RECOVERY_CONFIDENCE = 0.7
    AUTO_APPLY_CONFIDENCE = STRONG_MATCH_THRESHOLD
    AUTO_APPLY_MIN_OCCURRENCES = 3
    MAX_RECOVERY_CONFIDENCE = 0.9

    @classmethod
    def calculate_recovery_confidence(cls, occurrence_count: int, base: float = BASE_RECOVERY_CONFIDENCE) -> float:
        """1 occurrence: base; 2: base + 0.1; 3 or more: base + 0.2; never above 0.9."""
        if occurrence_count < 1:
            raise ValueError(f"occurrence_count must be at least 1, got {occurrence_count}")
        boost = 0.2 if occurrence_count >= 3 else 0.1 if occurrence_count == 2 else 0.0
        return round(min(cls.MAX_RECOVERY_CONFIDENCE, base + boost), 2)  # round: 0.7 + 0.1 is 0.7999...

    @classmethod
    def should_auto_apply(cls, confidence: float, occurrence_count: int) -> bool:
        """Auto-apply needs both a strong confidence and a pattern seen at least three times."""
        return confidence >= cls.AUTO_APPLY_CONFIDENCE and occurrence_count >= cls.AUTO_APPLY_MIN_OCCURRENCES

    @classmethod
    def get_confirmation_level(cls, confidence: float, occurrence_count: int) -> int:
        """Human confirmations needed: 0 when auto-applied, 1 at confidence >= 0.6, else 2."""
        if cls.should_auto_apply(confidence, occurrence_count):
            return 0
        return 1 if confidence >= WEAK_MATCH_THRESHOLD else 2
