"""Recovery templates per failure category, and the generated fallback for the rest."""

from __future__ import annotations

from incident_loop import categories
from incident_loop.categories import RecoveryPlan


def plan_for(category: str, error_type: str, skill_id: str | None) -> tuple[str, RecoveryPlan]:
    """(suggestion_type, plan): the category's template, or a conservative generated plan."""
    template = categories.category(category).recovery
    if template is not None:
        return "template", template
    target = f"skill {skill_id}" if skill_id else "the failing step"
    return "generated", RecoveryPlan(
        "retry_then_escalate",
        f"Retry {target} once after {error_type}; escalate to an operator if it fails again.",
        {"max_retries": 1, "escalate_on_failure": True, "error_type": error_type},
    )
