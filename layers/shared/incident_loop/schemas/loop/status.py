"""Where a loop stands: LoopStatus, with the results of its stages (rendered by schemas.loop.console)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from incident_loop.schemas.loop import console
from incident_loop.schemas.loop.base import LoopModel
from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage
from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
from incident_loop.schemas.loop.results import PatternMatchResult, RecoverySuggestion


class LoopStatus(LoopModel):
    """Complete status of an integration loop instance, with its console tree and narrative."""

    loop_id: str
    incident_id: str
    tenant_id: str
    current_stage: LoopStage
    stages_completed: list[str] = Field(default_factory=list)
    stages_failed: list[str] = Field(default_factory=list)
    total_stages: int = Field(default=len(LoopStage.ordered()), ge=1)
    started_at: datetime
    completed_at: datetime | None = None
    is_complete: bool = False
    is_blocked: bool = False
    failure_state: LoopFailureState | None = None
    pending_checkpoints: list[str] = Field(default_factory=list)
    pattern_match_result: PatternMatchResult | None = None
    recovery_suggestion: RecoverySuggestion | None = None
    policy_rule: PolicyRule | None = None
    routing_adjustment: RoutingAdjustment | None = None

    def completion_pct(self) -> float:
        """Percentage of stages completed, one decimal, never above 100."""
        return min(100.0, round(100 * len(self.stages_completed) / self.total_stages, 1))

    @property
    def narrative(self) -> str:
        """What happened, in plain English (the same text as _generate_narrative())."""
        return self._generate_narrative()

    def _generate_narrative(self) -> str:
        """A sentence per thing that happened, from the nested stage results."""
        return console.narrative(self)

    def to_console_display(self) -> str:
        """The loop as a console tree: one line per stage (✅ done, ❌ failed, ⏸ waiting, ⬜ not reached)."""
        return console.display(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with nested results as dicts, plus completion_pct and narrative."""
        return {**self.model_dump(mode="json"), "completion_pct": self.completion_pct(), "narrative": self.narrative}
