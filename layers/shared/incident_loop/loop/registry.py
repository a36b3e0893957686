"""The stage registry: every stage of the loop, the bridge that performs it, its queue, its result, its successor.

The loop starts with the incident (ingest records OPENING and hands it to the first stage) and runs
the stages below in order, each in its own function fed by its own queue. Whatever needs to know the
stages reads this table: the handler factory and the runner (loop.stage), the queue lookup (SQS
hand-offs), the hand-off after a checkpoint (loop.checkpoints) and the loop's status (loop.status).

Adding a stage:
* its bridge module here in loop/, named for its function `def <module>(uow, env) -> StageOutcome`, the
  hand-off being the payload the next stage needs, and optionally `def read_ahead(uow, envs)` reading
  for a whole batch what the bridge reads for each envelope (the `*_many` reads of the stores); the
  module is imported when its bridge is first asked for, so what reads only the loop's order (ingest,
  checkpoints, the loop API) does not load every bridge at init;
* one entry below (and `next` of the entry before it pointing at it);
* its block in template.yaml: queue, dead-letter queue and alarm, and its function, whose app.py
  is stage_handler(LoopStage.X) under the Powertools decorators; the previous stage's function gets
  the queue's URL;
* the names it introduces where they live: the LoopStage member (schemas.loop.enums), the queue's
  Settings field, and its result's field of LoopStatus with its console line (schemas.loop).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from incident_loop.loop.outcome import BatchRead, Bridge
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
from incident_loop.schemas.loop.results import PatternMatchResult, RecoverySuggestion
from incident_loop.settings import Settings
from incident_loop.stores.queues import QueueUnconfigured


@dataclass(frozen=True)
class Result:
    """Where a stage's result model sits: under `key` in its recorded details, as `status_field` of LoopStatus."""

    key: str
    model: type[BaseModel]
    status_field: str

    def read(self, details: dict[str, Any] | None) -> BaseModel | None:
        """The result model in a stage's recorded details, or None when the stage has not produced one."""
        value = (details or {}).get(self.key)
        return None if value is None else self.model.model_validate(value)


@dataclass(frozen=True)
class Stage:
    """One stage: the bridge that performs it, the queue that feeds it, what it produces, where it hands off.

    module: the bridge's module in incident_loop.loop; its function of the same name is the bridge.
    queue: the Settings field holding the queue's URL (its environment variable is the name in capitals).
    next: the stage its hand-off goes to; None for the last, whose hand-off completes the loop.
    """

    stage: LoopStage
    module: str
    queue: str
    result: Result
    next: LoopStage | None

    def _bridge_module(self) -> ModuleType:
        return importlib.import_module(f"incident_loop.loop.{self.module}")

    @property
    def bridge(self) -> Bridge:
        """The function that performs the stage for one envelope."""
        found: Bridge = getattr(self._bridge_module(), self.module)
        return found

    @property
    def read_ahead(self) -> BatchRead | None:
        """Reads, for a batch of envelopes, what the bridge reads for each (an optimisation only: the
        bridge reads whatever was not read ahead itself); None when the bridge has none."""
        found: BatchRead | None = getattr(self._bridge_module(), "read_ahead", None)
        return found


# The stage before the first: recorded by ingest, which hands the incident to STAGES[0].
OPENING = LoopStage.INCIDENT_CREATED

STAGES: tuple[Stage, ...] = (
    Stage(LoopStage.PATTERN_MATCHED, "match_pattern", queue="pattern_queue_url",
          result=Result("match_result", PatternMatchResult, "pattern_match_result"),
          next=LoopStage.RECOVERY_SUGGESTED),
    Stage(LoopStage.RECOVERY_SUGGESTED, "suggest_recovery", queue="recovery_queue_url",
          result=Result("recovery", RecoverySuggestion, "recovery_suggestion"),
          next=LoopStage.POLICY_GENERATED),
    Stage(LoopStage.POLICY_GENERATED, "generate_policy", queue="policy_queue_url",
          result=Result("policy", PolicyRule, "policy_rule"),
          next=LoopStage.ROUTING_ADJUSTED),
    Stage(LoopStage.ROUTING_ADJUSTED, "adjust_routing", queue="routing_queue_url",
          result=Result("routing", RoutingAdjustment, "routing_adjustment"),
          next=None),
)

_BY_STAGE = {entry.stage: entry for entry in STAGES}


def stage(name: LoopStage) -> Stage:
    """The registry's entry for a stage; KeyError for a stage no bridge performs."""
    return _BY_STAGE[name]


def first() -> Stage:
    """The stage every loop starts with, once the incident is recorded."""
    return STAGES[0]


def previous(name: LoopStage) -> LoopStage:
    """The stage that hands on to `name` (OPENING for the first)."""
    return next((entry.stage for entry in STAGES if entry.next == name), OPENING)


def queue_url_for(name: LoopStage, settings: Settings) -> str:
    """The URL of the queue that feeds the function performing `name`; QueueUnconfigured when it has none."""
    entry = _BY_STAGE.get(name)
    url = getattr(settings, entry.queue) if entry else None
    if not url:
        raise QueueUnconfigured(f"no queue configured for stage {name.value}")
    return str(url)
