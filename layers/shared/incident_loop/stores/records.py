"""Values the loop's stores take and give: a stage's record to append, an incident's progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from incident_loop.schemas.loop.events import LoopEvent

Row = dict[str, Any]


@dataclass(frozen=True)
class StageRecord:
    """A loop event to append once per key, and how it moves its loop's trace (LoopStore.record_all)."""

    event: LoopEvent
    key: str | None = None
    completed: bool = True
    blocked: bool = False
    pending_checkpoints: tuple[str, ...] = ()
    loop_complete: bool = False


class Progress(NamedTuple):
    """An incident's loop for a stage: the stages completed (None: no loop), what it recorded (None: not yet)."""

    completed: list[str] | None
    recorded: Row | None
