"""What a bridge decides for one envelope (StageOutcome), and how that is recorded and handed on.

A bridge returns its outcome; it neither records its event nor names the next stage. The outcome
carries one hand-off: the payload the next stage needs (the registry names that stage), or None when
the loop stops here (prevented, waiting on a person, rejected). The event is recorded with the
hand-off in its details, so a replay re-sends exactly what the first run sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.enums import LoopFailureState, LoopStage, is_failure
from incident_loop.stores.ports import UnitOfWork
from incident_loop.stores.records import StageRecord


@dataclass(frozen=True)
class StageOutcome:
    """What a bridge produced: the details it records, and at most one hand-off.

    hand_off: the next stage's payload; {} goes on with none, and after the last stage completes the
    loop. None: the loop does not go on from here. waiting_on: the checkpoints a person must resolve
    first (the stage is then blocked, not completed).
    """

    details: dict[str, Any]
    hand_off: dict[str, Any] | None = None
    failure_state: LoopFailureState | None = None
    confidence_band: ConfidenceBand | None = None
    waiting_on: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """The stage did its work: nobody has to decide first, and no failure stopped it."""
        return not self.waiting_on and not is_failure(self.failure_state)


Bridge = Callable[[UnitOfWork, Envelope], StageOutcome]
# Reads ahead, for a batch of envelopes of one tenant, what the bridge will read for each of them.
BatchRead = Callable[[UnitOfWork, Sequence[Envelope]], None]


def hand_off(stage: LoopStage | None, **payload: Any) -> dict[str, Any] | None:
    """The `next` entry stored with a stage's details."""
    return None if stage is None else {"stage": stage.value, "payload": payload}


def handed_off(envelope: Envelope, details: dict[str, Any]) -> Envelope | None:
    """The envelope a stage's stored details hand on to (used on replays), or None."""
    nxt = details.get("next")
    if not nxt:
        return None
    return envelope.next(LoopStage(nxt["stage"]), **nxt.get("payload", {}))


def to_record(envelope: Envelope, outcome: StageOutcome, next_stage: LoopStage | None, *,
              key: str | None = None) -> tuple[StageRecord, dict[str, Any], Envelope | None]:
    """What recording `envelope.stage`'s outcome writes, its details (hand-off included) and the envelope to send.

    A hand-off after the last stage (no next stage) completes the loop.
    """
    nxt = envelope.next(next_stage, **outcome.hand_off) if outcome.hand_off is not None and next_stage else None
    details = {**outcome.details, "next": hand_off(nxt.stage, **nxt.payload) if nxt else None}
    waiting = tuple(outcome.waiting_on)
    event = envelope.event(envelope.stage, details, failure_state=outcome.failure_state,
                           confidence_band=outcome.confidence_band, requires_human_review=bool(waiting))
    recorded = StageRecord(event, key=key, completed=outcome.completed, blocked=bool(waiting),
                           pending_checkpoints=waiting,
                           loop_complete=outcome.hand_off is not None and next_stage is None)
    return recorded, details, nxt


def record(uow: UnitOfWork, envelope: Envelope, outcome: StageOutcome, next_stage: LoopStage | None, *,
           key: str | None = None) -> tuple[dict[str, Any], Envelope | None]:
    """Record what `envelope.stage` did; returns its details (hand-off included) and the envelope to send."""
    recorded, details, nxt = to_record(envelope, outcome, next_stage, key=key)
    uow.loop.record(recorded.event, key=key, completed=recorded.completed, blocked=recorded.blocked,
                    pending_checkpoints=list(recorded.pending_checkpoints), loop_complete=recorded.loop_complete)
    return details, nxt
