"""Running one loop stage for one envelope: exactly-once effects over at-least-once delivery.

Three layers keep a redelivered or out-of-order message from changing anything twice:
Powertools idempotency on DynamoDB (keyed on incident and stage), a per-incident advisory
lock for the transaction, and unique keys in PostgreSQL. A stage that already recorded its
event replays the stored outcome (re-sending the next envelope, which is itself idempotent),
so a crash between commit and send never strands a loop. A stage whose predecessor has not
completed yet raises NotReady and waits for redelivery: an early message never skips the loop ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from psycopg import Connection

from incident_loop.batch import LoggingBatchProcessor, log_context
from incident_loop.db import get_connection, transaction
from incident_loop.loop.errors import NotReady
from incident_loop.observability import logger, metrics
from incident_loop.schemas.envelope import Envelope, EnvelopeRecord
from incident_loop.schemas.loop_events import LoopStage
from incident_loop.settings import get_settings
from incident_loop.stores.loop_store import lock_incident, stage_result, stages_completed
from incident_loop.stores.queues import SqsStageQueues, StageQueues


class WrongStage(ValueError):
    """The envelope asks for a stage this function does not perform (a misrouted message)."""


@dataclass
class StageOutcome:
    """What a bridge produced: its JSON result and the envelopes for the next stage."""

    result: dict[str, Any]
    next: list[Envelope] = field(default_factory=list)


Bridge = Callable[[Connection[Any], Envelope], StageOutcome]


def next_from_result(envelope: Envelope, result: dict[str, Any]) -> list[Envelope]:
    """Rebuild the hand-off recorded in a stage's stored result (used on replays)."""
    nxt = result.get("next")
    if not nxt:
        return []
    return [envelope.next(LoopStage(nxt["stage"]), **nxt.get("payload", {}))]


def hand_off(stage: LoopStage | None, **payload: Any) -> dict[str, Any] | None:
    """The `next` entry a bridge stores with its result."""
    return None if stage is None else {"stage": stage.value, "payload": payload}


def _require_predecessor(conn: Connection[Any], envelope: Envelope, stage: LoopStage) -> None:
    """A stage runs only after the one before it completed; an early message waits (SQS redelivers it)."""
    order = LoopStage.ordered()
    before = order[order.index(stage) - 1]
    done = stages_completed(conn, envelope.tenant_id, envelope.incident_id)
    if done is None:  # not stored yet, or not this tenant's: retried, then dead-lettered
        raise NotReady(f"incident {envelope.incident_id} of tenant {envelope.tenant_id} is not stored yet")
    if before.value not in done:
        raise NotReady(f"{stage.value} of incident {envelope.incident_id} waits for {before.value}")


def process_stage(
    envelope: Envelope,
    bridge: Bridge,
    stage: LoopStage,
    *,
    conn: Connection[Any] | None = None,
    queues: StageQueues | None = None,
) -> dict[str, Any]:
    """Perform `stage` for the envelope inside one transaction, then hand off to the next stage."""
    log_context(envelope.incident_id, envelope.tenant_id, stage.value)
    if envelope.stage != stage:
        raise WrongStage(f"this function performs {stage.value}, the message asks for {envelope.stage.value}")
    conn = conn or get_connection()
    # Scoped to the envelope's tenant: an envelope naming another tenant's incident finds nothing
    # (the bridge raises NotReady, so the message is retried and dead-lettered) and changes nothing.
    with transaction(conn, tenant_id=envelope.tenant_id):
        lock_incident(conn, envelope.incident_id)
        stored = stage_result(conn, envelope.tenant_id, envelope.incident_id, stage.value)
        if stored is not None:
            logger.info("stage already recorded, replaying its hand-off")
            outcome = StageOutcome(stored, next_from_result(envelope, stored))
        else:
            _require_predecessor(conn, envelope, stage)
            outcome = bridge(conn, envelope)
    sender = queues or SqsStageQueues()
    for nxt in outcome.next:
        sender.send(nxt)
    metrics.add_metric(name="LoopStageProcessed", unit=MetricUnit.Count, value=1)
    logger.info("stage processed", handed_off=[n.stage.value for n in outcome.next])
    return outcome.result


@cache
def idempotency_config() -> IdempotencyConfig:
    """Idempotency on the envelope's (tenant, incident, stage): the same work done once per expiry window.

    The tenant is part of the key, so another tenant's envelope never replays a stored result.
    """
    return IdempotencyConfig(
        event_key_jmespath="[tenant_id, incident_id, stage]",
        expires_after_seconds=get_settings().idempotency_expiry_s,
        raise_on_no_idempotency_key=True,
    )


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table)


def run_idempotent_stage(envelope: Envelope, bridge: Bridge, stage: LoopStage) -> dict[str, Any]:
    """process_stage behind Powertools idempotency (DynamoDB), keyed on tenant, incident and stage."""

    @idempotent_function(
        data_keyword_argument="envelope",
        persistence_store=_persistence(),
        config=idempotency_config(),
    )
    def _once(envelope: Envelope) -> dict[str, Any]:
        return process_stage(envelope, bridge, stage)

    # The function name is part of the idempotency key: keep it per stage.
    _once.__qualname__ = f"stage_{stage.value}"
    return _once(envelope=envelope)


def sqs_processor() -> LoggingBatchProcessor:
    """The processor every loop consumer uses: SQS records parsed into envelopes."""
    return LoggingBatchProcessor(event_type=EventType.SQS, model=EnvelopeRecord)
