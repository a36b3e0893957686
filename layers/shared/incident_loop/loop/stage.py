"""Running one loop stage for one envelope: exactly-once effects over at-least-once delivery.

Three layers keep a redelivered or out-of-order message from changing anything twice:
Powertools idempotency on DynamoDB (keyed on incident and stage), a per-incident advisory
lock for the transaction, and unique keys in PostgreSQL. A stage that already recorded its
event replays the stored outcome (re-sending the next envelope, which is itself idempotent),
so a crash between commit and send never strands a loop. A stage whose predecessor has not
completed yet raises NotReady and waits for redelivery: an early message never skips the loop ahead.

stage_handler(stage) is the one SQS handler every stage's function wraps in its Powertools decorators.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.batch import LoggingBatchProcessor, log_context
from incident_loop.loop import registry
from incident_loop.loop.errors import NotReady
from incident_loop.loop.outcome import handed_off, record
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger, metrics
from incident_loop.schemas.envelope import Envelope, EnvelopeRecord
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.settings import get_settings
from incident_loop.stores.ports import UnitOfWork


class WrongStage(ValueError):
    """The envelope asks for a stage this function does not perform (a misrouted message)."""


def _require_predecessor(uow: UnitOfWork, envelope: Envelope, stage: LoopStage) -> None:
    """A stage runs only after the one before it completed; an early message waits (SQS redelivers it)."""
    before = registry.previous(stage)
    done = uow.loop.completed(envelope.tenant_id, envelope.incident_id)
    if done is None:  # not stored yet, or not this tenant's: retried, then dead-lettered
        raise NotReady(f"incident {envelope.incident_id} of tenant {envelope.tenant_id} is not stored yet")
    if before.value not in done:
        raise NotReady(f"{stage.value} of incident {envelope.incident_id} waits for {before.value}")


def process_stage(envelope: Envelope, stage: LoopStage, *, uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Perform `stage` for the envelope inside one transaction, then hand off to the next stage."""
    log_context(envelope.incident_id, envelope.tenant_id, stage.value)
    if envelope.stage != stage:
        raise WrongStage(f"this function performs {stage.value}, the message asks for {envelope.stage.value}")
    entry = registry.stage(stage)
    uow = unit_of_work(uow)
    # Scoped to the envelope's tenant: an envelope naming another tenant's incident finds nothing
    # (the bridge raises NotReady, so the message is retried and dead-lettered) and changes nothing.
    with uow.begin(envelope.tenant_id):
        uow.loop.lock(envelope.incident_id)
        details = uow.loop.result(envelope.tenant_id, envelope.incident_id, stage.value)
        if details is not None:
            logger.info("stage already recorded, replaying its hand-off")
            nxt = handed_off(envelope, details)
        else:
            _require_predecessor(uow, envelope, stage)
            details, nxt = record(uow, envelope, entry.bridge(uow, envelope), entry.next)
    if nxt is not None:
        uow.queues.send(nxt)
    metrics.add_metric(name="LoopStageProcessed", unit=MetricUnit.Count, value=1)
    logger.info("stage processed", handed_off=[nxt.stage.value] if nxt else [])
    return details


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


def run_idempotent_stage(envelope: Envelope, stage: LoopStage) -> dict[str, Any]:
    """process_stage behind Powertools idempotency (DynamoDB), keyed on tenant, incident and stage."""

    @idempotent_function(
        data_keyword_argument="envelope",
        persistence_store=_persistence(),
        config=idempotency_config(),
    )
    def _once(envelope: Envelope) -> dict[str, Any]:
        return process_stage(envelope, stage)

    # The function name is part of the idempotency key: keep it per stage.
    _once.__qualname__ = f"stage_{stage.value}"
    return _once(envelope=envelope)


def sqs_processor() -> LoggingBatchProcessor:
    """The processor every loop consumer uses: SQS records parsed into envelopes."""
    return LoggingBatchProcessor(event_type=EventType.SQS, model=EnvelopeRecord)


def stage_handler(stage: LoopStage) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The handler of the function performing `stage`: its queue's batches, with partial failures.

    Each record runs once per (tenant, incident, stage); a failed record goes back to the queue alone.
    """
    registry.stage(stage)  # a stage no bridge performs fails at import, not at the first message
    processor = sqs_processor()

    def record_handler(record: EnvelopeRecord) -> dict[str, Any]:
        return run_idempotent_stage(record.body, stage)

    def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        idempotency_config().register_lambda_context(context)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handle
