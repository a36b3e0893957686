"""Recovery templates per failure category, and the generated fallback for the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecoveryPlan:
    action_type: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)


TEMPLATES: dict[str, RecoveryPlan] = {
    "timeout": RecoveryPlan(
        "retry_with_backoff",
        "Retry the step with exponential backoff and a doubled timeout.",
        {"max_retries": 3, "backoff": "exponential", "base_delay_s": 2, "timeout_multiplier": 2.0},
    ),
    "rate_limit": RecoveryPlan(
        "retry_after_delay",
        "Wait for the provider's Retry-After (or 30 s) and retry once; lower the agent's request rate.",
        {"respect_retry_after": True, "default_delay_s": 30, "max_retries": 1},
    ),
    "http_error": RecoveryPlan(
        "retry_with_backoff",
        "Retry transient HTTP errors with jittered backoff; fail over to the secondary endpoint on 5xx.",
        {"max_retries": 2, "backoff": "jittered", "failover": True},
    ),
    "auth": RecoveryPlan(
        "refresh_credentials",
        "Refresh the credentials from the secret store and retry once; escalate if it fails again.",
        {"max_retries": 1, "escalate_on_failure": True},
    ),
    "validation": RecoveryPlan(
        "repair_input",
        "Re-generate the step's output against the schema, with the validation error as feedback.",
        {"max_attempts": 2, "include_error_feedback": True},
    ),
    "resource": RecoveryPlan(
        "reduce_load",
        "Retry with a smaller batch or context window; route to a larger worker if it recurs.",
        {"shrink_factor": 0.5, "max_retries": 2},
    ),
    "policy": RecoveryPlan(
        "escalate_to_human",
        "The step was blocked by a policy: stop and ask an operator instead of retrying.",
        {"retry": False},
    ),
}


def plan_for(category: str, error_type: str, skill_id: str | None) -> tuple[str, RecoveryPlan]:
    """(suggestion_type, plan): the category's template, or a conservative generated plan."""
    if category in TEMPLATES:
        return "template", TEMPLATES[category]
    target = f"skill {skill_id}" if skill_id else "the failing step"
    return "generated", RecoveryPlan(
        "retry_then_escalate",
        f"Retry {target} once after {error_type}; escalate to an operator if it fails again.",
        {"max_retries": 1, "escalate_on_failure": True, "error_type": error_type},
    )
