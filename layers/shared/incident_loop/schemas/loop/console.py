"""A loop's status for people: the console tree of its stages and the narrative of what happened.

Reads any status shaped like LoopStatus (StatusView), so the model and its rendering stay apart.
"""

from __future__ import annotations

from typing import Protocol

from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage, is_failure
from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
from incident_loop.schemas.loop.results import PatternMatchResult, RecoverySuggestion

_MATCH_LABELS = {"exact": "exact hash", "fuzzy": "fuzzy match", "new": "new pattern"}


class StatusView(Protocol):
    """What the console reads of a loop's status (LoopStatus has it)."""

    incident_id: str
    current_stage: LoopStage
    stages_completed: list[str]
    stages_failed: list[str]
    is_complete: bool
    is_blocked: bool
    failure_state: LoopFailureState | None
    pending_checkpoints: list[str]
    pattern_match_result: PatternMatchResult | None
    recovery_suggestion: RecoverySuggestion | None
    policy_rule: PolicyRule | None
    routing_adjustment: RoutingAdjustment | None


def _waiting(status: StatusView) -> bool:
    return status.is_blocked or status.failure_state == LoopFailureState.RECOVERY_PENDING_APPROVAL


def _failed(status: StatusView) -> bool:
    return is_failure(status.failure_state)


def _headline(status: StatusView) -> str:
    if status.failure_state == LoopFailureState.PREVENTED:
        return "PREVENTED"
    if status.is_complete:
        return "COMPLETE"
    if _waiting(status):
        return "BLOCKED"
    if _failed(status):
        assert status.failure_state is not None
        return f"FAILED ({status.failure_state.value})"
    return "IN PROGRESS"


def _match_kind(m: PatternMatchResult) -> str:
    if not m.matched:
        return "no match"
    return str(m.match_details.get("match_type") or ("new" if m.is_new_pattern else "match"))


def _stage_note(status: StatusView, stage: LoopStage) -> str:
    m, r, p, a = status.pattern_match_result, status.recovery_suggestion, status.policy_rule, status.routing_adjustment
    if stage == LoopStage.PATTERN_MATCHED and m:
        kind = _match_kind(m)
        prevented = m.match_details.get("prevented_by")
        tail = f", prevented by {prevented}" if prevented else ""
        return f" ({_MATCH_LABELS.get(kind, kind)}, {m.confidence:g} confidence{tail})"
    if stage == LoopStage.RECOVERY_SUGGESTED and r:
        if r.auto_applicable:
            how = "auto-apply"
        else:
            how = {"pending": "needs approval", "approved": "approved", "applied": "approved, applied"}.get(
                r.status, "rejected"
            )
        return f" ({how}, {r.confidence:g} confidence)"
    if stage == LoopStage.POLICY_GENERATED and p:
        return f" ({p.mode.value} mode)"
    if stage == LoopStage.ROUTING_ADJUSTED and a:
        rolled = ", rolled back" if a.was_rolled_back else ""
        return f" ({a.adjustment_type} {a.magnitude:+g}{rolled})"
    return ""


def _stage_mark(status: StatusView, stage: LoopStage) -> str:
    if stage.value in status.stages_failed:
        return "❌"
    if stage.value in status.stages_completed:
        return "✅"
    if stage == status.current_stage and _waiting(status):
        return f"⏸ waiting on {', '.join(status.pending_checkpoints) or 'a person'}"
    return "⬜"


def display(status: StatusView) -> str:
    """The loop as a console tree: one line per stage (✅ done, ❌ failed, ⏸ waiting, ⬜ not reached)."""
    lines = [
        f"Incident: {status.incident_id}",
        f"Loop Status: {_headline(status)} (is_complete: {str(status.is_complete).lower()})",
        "",
        "Stages Completed:",
    ]
    stages = LoopStage.ordered()
    for i, stage in enumerate(stages):
        branch = "└──" if i == len(stages) - 1 else "├──"
        lines.append(f"{branch} {stage.value} {_stage_mark(status, stage)}{_stage_note(status, stage)}")
    lines += ["", f"Narrative: {narrative(status)}"]
    return "\n".join(lines)


def narrative(status: StatusView) -> str:
    """A sentence per thing that happened, from the nested stage results."""
    m, r, p, a = status.pattern_match_result, status.recovery_suggestion, status.policy_rule, status.routing_adjustment
    parts: list[str] = []
    if m is None:
        parts.append(f"Incident {status.incident_id} was recorded.")
    elif not m.matched:
        parts.append(f"Incident {status.incident_id} matched no known pattern.")
    elif m.is_new_pattern or m.match_details.get("match_type") == "new":
        parts.append(f"Incident {status.incident_id} started new pattern {m.pattern_id} ({m.confidence:g}).")
    else:
        kind = _match_kind(m)
        parts.append(f"Incident {status.incident_id} matched pattern {m.pattern_id} ({kind}, {m.confidence:g}).")
    if status.failure_state == LoopFailureState.PREVENTED:
        by = m.match_details.get("prevented_by") if m else None
        parts.append(f"It was prevented by active policy {by}." if by else "It was prevented by an active policy.")
    if r and r.suggestion_type == "none":
        parts.append(f"No recovery was available: {r.rejection_reason}.")
    elif r and r.status == "rejected":
        parts.append(f"Recovery {r.recovery_id} was rejected: {r.rejection_reason}.")
    elif r and r.auto_applicable:
        parts.append(f"Recovery {r.recovery_id} was auto-applied at {r.confidence:g}.")
    elif r and r.status == "pending":
        parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} is waiting for human approval.")
    elif r:
        parts.append(f"Recovery {r.recovery_id} at {r.confidence:g} was approved by a person.")
    if p:
        parts.append(f"Policy {p.policy_id} is in {p.mode.value} mode.")
    if a and a.was_rolled_back:
        parts.append(f"Routing for agent {a.agent_id} was adjusted, then rolled back: {a.rollback_reason}.")
    elif a:
        parts.append(f"Routing for agent {a.agent_id} was adjusted by {a.magnitude:g}.")
    if _waiting(status) and status.pending_checkpoints:
        parts.append(f"The loop is waiting on {', '.join(status.pending_checkpoints)}.")
    elif _failed(status):
        assert status.failure_state is not None
        parts.append(f"The loop stopped at {status.current_stage.value}: {status.failure_state.value}.")
    return " ".join(parts)
