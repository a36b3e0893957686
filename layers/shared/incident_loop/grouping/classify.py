"""What kind of failure a pattern is: (pattern_type, category), from the error type, then the message."""

from __future__ import annotations

from incident_loop import categories


def classify(error_type: str, message: str) -> tuple[str, str]:
    """(pattern_type, category) from the error type first, then the message; never empty."""
    found = categories.classify(error_type, message)  # the rows of incident_loop.categories, in order
    return found.pattern_type, found.name
