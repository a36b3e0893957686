"""The failure categories: one table that everything sorting or answering a failure reads.

Two spellings meet here. The loop's is lower-case: grouping's classifier gives it to a pattern
(`failure_patterns.category`). The error catalog's is upper-case: errors.yaml and
`failure_matches.category`. A row holds both, and what the loop does about that kind of failure:

* `signals`: how the classifier recognises it (grouping.classify tries the rows in order, on the
  error type first, then on the message; no signal: the classifier never gives it);
* `pattern_type`: what Bridge 1 stores as the pattern's type;
* `recovery`: the template Bridge 2 suggests (none: a generated, conservative plan);
* `policy`: the action and family of the policy Bridge 3 writes; Bridge 4 adjusts routing by that
  action (ADJUSTMENTS).

A new category is one row (and, for the catalog, its entries in errors.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from incident_loop.schemas.loop.enums import AdjustmentType, PolicyAction, PolicyCategory


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do about a failure: an action, the text a person reads, and the action's parameters."""

    action_type: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)


# A category without a policy of its own: escalate it to a person, as a custom policy.
DEFAULT_POLICY: tuple[PolicyAction, PolicyCategory] = ("escalate", "custom")


@dataclass(frozen=True)
class Category:
    name: str  # the loop's spelling
    catalog: str | None  # the error catalog's spelling (None: the catalog has no such category)
    pattern_type: str
    signals: re.Pattern[str] | None = None
    recovery: RecoveryPlan | None = None
    policy: tuple[PolicyAction, PolicyCategory] = DEFAULT_POLICY


def _signals(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


CATEGORIES: tuple[Category, ...] = (
    Category(
        "policy", "POLICY", "policy_violation",
        _signals(r"polic|guardrail|blocked by|not allowed by|disallowed"),
        RecoveryPlan("escalate_to_human",
                     "The step was blocked by a policy: stop and ask an operator instead of retrying.",
                     {"retry": False}),
        ("block", "safety"),
    ),
    Category(
        "rate_limit", "RATE_LIMIT", "rate_limit",
        _signals(r"rate.?limit|too many requests|\b429\b|throttl|quota"),
        RecoveryPlan("retry_after_delay",
                     "Wait for the provider's Retry-After (or 30 s) and retry once; lower the agent's request rate.",
                     {"respect_retry_after": True, "default_delay_s": 30, "max_retries": 1}),
        ("rate_limit", "operational"),
    ),
    Category(
        "timeout", "TIMEOUT", "timeout",
        _signals(r"time(d|s)?[ _-]?out|deadline exceeded"),
        RecoveryPlan("retry_with_backoff",
                     "Retry the step with exponential backoff and a doubled timeout.",
                     {"max_retries": 3, "backoff": "exponential", "base_delay_s": 2, "timeout_multiplier": 2.0}),
        ("route_away", "routing"),
    ),
    Category(
        "auth", "PERMISSION", "auth_error",
        _signals(r"unauthori[sz]|forbidden|\b40[13]\b|authenticat|credential|token expired|permission"),
        RecoveryPlan("refresh_credentials",
                     "Refresh the credentials from the secret store and retry once; escalate if it fails again.",
                     {"max_retries": 1, "escalate_on_failure": True}),
        ("block", "safety"),
    ),
    Category(
        "validation", "VALIDATION", "validation",
        _signals(r"valid|schema|pars(e|ing)|malformed|unexpected field|type ?error|not a number"),
        RecoveryPlan("repair_input",
                     "Re-generate the step's output against the schema, with the validation error as feedback.",
                     {"max_attempts": 2, "include_error_feedback": True}),
        ("warn", "operational"),
    ),
    Category(
        "resource", "RESOURCE", "resource",
        _signals(r"memory|disk|resource|capacity|exhausted|context length|\boom\b|no space"),
        RecoveryPlan("reduce_load",
                     "Retry with a smaller batch or context window; route to a larger worker if it recurs.",
                     {"shrink_factor": 0.5, "max_retries": 2}),
        ("route_away", "operational"),
    ),
    Category(
        "http_error", "NETWORK", "http_error",
        _signals(r"\bhttp|\b5\d\d\b|connection (reset|refused|error)|unavailable|bad gateway"),
        RecoveryPlan("retry_with_backoff",
                     "Retry transient HTTP errors with jittered backoff; fail over to the secondary endpoint on 5xx.",
                     {"max_retries": 2, "backoff": "jittered", "failover": True}),
        ("route_away", "routing"),
    ),
    # The catalog's alone: the classifier has no signal for them yet.
    Category("budget", "BUDGET", "budget"),
    Category("configuration", "CONFIGURATION", "configuration"),
)
# What the classifier gives a failure no row recognises.
UNKNOWN = Category("unknown", None, "error")

# The routing adjustment Bridge 4 makes for each action a policy takes.
ADJUSTMENTS: dict[PolicyAction, AdjustmentType] = {
    "block": "route_block",
    "route_away": "weight_shift",
    "escalate": "escalation_add",
    "rate_limit": "confidence_penalty",
    "warn": "confidence_penalty",
}

_BY_NAME = {c.name: c for c in (*CATEGORIES, UNKNOWN)}
_BY_CATALOG = {c.catalog: c for c in CATEGORIES if c.catalog}


def category(name: str) -> Category:
    """The row of a category in the loop's spelling; UNKNOWN for a name no row has."""
    return _BY_NAME.get(name, UNKNOWN)


def from_catalog(spelling: str) -> Category:
    """The row of a category in the error catalog's spelling; UNKNOWN for a spelling no row has."""
    return _BY_CATALOG.get(spelling, UNKNOWN)


def classify(*texts: str) -> Category:
    """The first row whose signals find the first text that any row recognises; UNKNOWN when none does."""
    for text in texts:
        for row in CATEGORIES:
            if row.signals is not None and row.signals.search(text):
                return row
    return UNKNOWN
