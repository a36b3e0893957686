"""Running one loop stage for a batch of envelopes: exactly-once effects over at-least-once delivery.

Two things keep a redelivered or out-of-order message from changing anything twice: a per-incident
advisory lock for the transaction, and unique keys in PostgreSQL (loop_events' event key above all,
written in the same transaction as the stage's effects). A stage that already recorded its event
replays the stored outcome (re-sending the next envelope, which is itself exactly-once at the next
stage), so a crash between commit and send never strands a loop. A stage whose predecessor has not
completed yet raises NotReady and waits for redelivery: an early message never skips the loop ahead.
No idempotency record is kept beside them: the stage has no effect outside PostgreSQL but the
hand-off, and a repeated hand-off is a replay at the next stage.

A batch is one transaction (UnitOfWork.batch): one statement locks every incident; then, for each
tenant of the batch in turn (the transaction scoped to it), one statement reads where each loop
stands, the bridge's read_ahead reads for all of them, the bridges run one envelope at a time against
what was read, and one statement records every event. The hand-offs go out ten to a SendMessageBatch
once it committed. When anything but an unavailable database fails the batch, it is rolled back and
each envelope runs again alone, so a bad one fails by itself and its neighbours pass; so does a batch
that lost to a concurrent one (a deadlock). stage_handler(stage) is the SQS handler every stage's function wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.batch import LoggingBatchProcessor, NotAttempted, each_tenant_apart, log_context
from incident_loop.db import DatabaseConflict, DatabaseLockWait, DatabaseUnavailable
from incident_loop.loop import registry
from incident_loop.loop.errors import NotReady
from incident_loop.loop.outcome import handed_off, to_record
from incident_loop.loop.wiring import unit_of_work
from incident_loop.observability import logger, metrics
from incident_loop.schemas.envelope import Envelope, EnvelopeRecord
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.stores.ports import UnitOfWork
from incident_loop.stores.records import Progress, StageRecord

# What running a stage gave one envelope: (its details, the envelope it hands on to), or why it failed.
Done = tuple[dict[str, Any], Envelope | None]
Result = Done | Exception


class WrongStage(ValueError):
    """The envelope asks for a stage this function does not perform (a misrouted message)."""


def _waiting(progress: Progress | None, envelope: Envelope, stage: LoopStage) -> NotReady | None:
    """Why the stage cannot run yet: its incident is not stored (or not this tenant's), or the stage
    before it has not completed; None when it can."""
    if progress is None or progress.completed is None:  # retried, then dead-lettered
        return NotReady(f"incident {envelope.incident_id} of tenant {envelope.tenant_id} is not stored yet")
    before = registry.previous(stage)
    if before.value not in progress.completed:
        return NotReady(f"{stage.value} of incident {envelope.incident_id} waits for {before.value}")
    return None


def _run(uow: UnitOfWork, envelopes: Sequence[Envelope], stage: LoopStage) -> list[Result]:
    """The stage for envelopes of one incident each, in one transaction scoped to each tenant in turn.

    An envelope that waits (NotReady) fails alone; anything a bridge raises fails the whole transaction.
    """
    tenants: dict[str, list[int]] = {}
    for i, env in enumerate(envelopes):
        tenants.setdefault(env.tenant_id, []).append(i)
    results: list[Result] = [NotReady("not run")] * len(envelopes)  # each replaced below
    with uow.batch(envelopes[0].tenant_id):
        uow.loop.lock_all([env.incident_id for env in envelopes])
        for tenant_id, indexes in sorted(tenants.items()):  # one order for every worker: its locks in that order
            # Scoped to the envelopes' tenant: an envelope naming another tenant's incident finds
            # nothing (it waits, is retried and dead-lettered) and changes nothing.
            uow.scope(tenant_id)
            for i, result in zip(indexes, _run_tenant(uow, tenant_id, [envelopes[i] for i in indexes], stage),
                                 strict=True):
                results[i] = result
    return results


def _run_tenant(uow: UnitOfWork, tenant_id: str, envelopes: Sequence[Envelope], stage: LoopStage) -> list[Result]:
    """One tenant's part of the batch's transaction: where each loop stands and what the bridge reads, for
    all of them at once, then the bridge for each that may run, and every event recorded at once."""
    entry = registry.stage(stage)
    results: list[Result] = []
    todo: list[int] = []
    progress = uow.loop.progress(tenant_id, [env.incident_id for env in envelopes], stage.value)
    if entry.read_ahead is not None:  # for every envelope: its first read brings `progress` back with it
        entry.read_ahead(uow, envelopes)
    for env in envelopes:
        stored = progress.get(env.incident_id)
        waiting = _waiting(stored, env, stage)
        if stored is not None and stored.recorded is not None:  # redelivered: replay what it handed on
            results.append((stored.recorded, handed_off(env, stored.recorded)))
        else:
            if waiting is None:
                todo.append(len(results))
            results.append(waiting or NotReady("not run"))
    records: list[StageRecord] = []
    for i in todo:
        log_context(envelopes[i].incident_id, tenant_id, stage.value)
        recorded, details, nxt = to_record(envelopes[i], entry.bridge(uow, envelopes[i]), entry.next)
        records.append(recorded)
        results[i] = (details, nxt)
    uow.loop.record_all(records)
    return results


def _each_alone(uow: UnitOfWork, envelopes: Sequence[Envelope], stage: LoopStage) -> list[Result]:
    """_run() for each envelope by itself, so what fails is that envelope's own failure. Once the database
    is unavailable, the rest are left for redelivery untried."""
    ran: list[Result] = []
    for env in envelopes:
        unavailable = next((r for r in ran if isinstance(r, DatabaseUnavailable)
                            and not isinstance(r, DatabaseConflict)), None)
        if unavailable is not None:
            ran.append(NotAttempted(f"the database is unavailable ({unavailable}); left for redelivery"))
            continue
        try:
            ran.append(_run(uow, [env], stage)[0])
        except Exception as exc:  # noqa: BLE001 - the envelope's own failure, reported for it alone
            ran.append(exc)
    return ran


def _each_tenant(uow: UnitOfWork, envelopes: Sequence[Envelope], stage: LoopStage) -> list[Result]:
    """_run() for each tenant's envelopes by themselves (batch.each_tenant_apart)."""

    def tenant(group: list[Envelope]) -> list[Result]:
        try:
            return _run(uow, group, stage)
        except DatabaseUnavailable as exc:
            return [exc] * len(group)
        except Exception as exc:  # noqa: BLE001 - the tenant's own failure: each of its envelopes alone
            return _each_alone(uow, group, stage) if len(group) > 1 else [exc]

    return each_tenant_apart(envelopes, lambda env: env.tenant_id, tenant)


def process_batch(envelopes: Sequence[Envelope], stage: LoopStage, *,
                  uow: UnitOfWork | None = None) -> list[Result]:
    """Perform `stage` for each envelope and hand each off; for each, its details or why it failed.

    One transaction for the batch; when it fails for anything but an unavailable database, each envelope
    runs again alone. An incident delivered twice in one batch runs once, and the copy replays it.
    """
    results: list[Result | None] = [None] * len(envelopes)
    first: dict[tuple[str, str], int] = {}
    for i, env in enumerate(envelopes):
        if env.stage != stage:
            results[i] = WrongStage(f"this function performs {stage.value}, the message asks for {env.stage.value}")
        else:
            first.setdefault((env.tenant_id, env.incident_id), i)
    unique = [envelopes[i] for i in sorted(first.values())]
    ran: list[Result] = []
    if unique:
        try:
            uow = unit_of_work(uow)  # connects, when the container has no connection yet
            ran = _run(uow, unique, stage)
        except DatabaseUnavailable as exc:
            if isinstance(exc, DatabaseLockWait) and len({env.tenant_id for env in unique}) > 1:
                # One tenant's keys held elsewhere (a storm of its failure): its envelopes wait, no other tenant's.
                logger.warning("batch waited past lock_timeout, running each tenant's envelopes apart", reason=str(exc))
                ran = _each_tenant(uow, unique, stage)  # type: ignore[arg-type]
            elif not isinstance(exc, DatabaseConflict) or len(unique) == 1:
                ran = [exc] * len(unique)
            else:  # lost to a concurrent batch (a deadlock): alone, each holds fewer locks
                logger.warning("batch lost to a concurrent one, running its envelopes one by one", reason=str(exc))
                ran = _each_alone(uow, unique, stage)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - one envelope's failure must not fail its neighbours
            if len(unique) == 1:
                ran = [exc]
            else:
                logger.warning("batch failed, running its envelopes one by one", reason=f"{type(exc).__name__}: {exc}")
                ran = _each_alone(uow, unique, stage)  # type: ignore[arg-type]
    by_key = {(env.tenant_id, env.incident_id): result for env, result in zip(unique, ran, strict=True)}
    for i, env in enumerate(envelopes):
        if results[i] is None:
            results[i] = by_key[(env.tenant_id, env.incident_id)]
    _hand_off(uow, envelopes, results)
    done = sum(1 for r in results if isinstance(r, tuple))
    if done:
        metrics.add_metric(name="LoopStageProcessed", unit=MetricUnit.Count, value=done)
    return results  # type: ignore[return-value]


def _hand_off(uow: UnitOfWork | None, envelopes: Sequence[Envelope], results: list[Result | None]) -> None:
    """Send every hand-off of the committed envelopes; one that is not sent fails its envelope (SQS
    redelivers it, and the replay sends it again)."""
    sending = [i for i, r in enumerate(results) if isinstance(r, tuple) and r[1] is not None]
    answers = uow.queues.send_all([results[i][1] for i in sending]) if uow and sending else []  # type: ignore[index,misc]
    failed = {i: failure for i, failure in zip(sending, answers, strict=True) if failure is not None}
    for i, result in enumerate(results):
        if i in failed:
            results[i] = failed[i]
        elif isinstance(result, tuple):
            log_context(envelopes[i].incident_id, envelopes[i].tenant_id, envelopes[i].stage.value)
            logger.info("stage processed", handed_off=[result[1].stage.value] if result[1] else [])


def process_stage(envelope: Envelope, stage: LoopStage, *, uow: UnitOfWork | None = None) -> dict[str, Any]:
    """Perform `stage` for one envelope inside one transaction, then hand off to the next stage."""
    log_context(envelope.incident_id, envelope.tenant_id, stage.value)
    [result] = process_batch([envelope], stage, uow=uow)
    if isinstance(result, Exception):
        raise result
    return result[0]


def stage_handler(stage: LoopStage) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The handler of the function performing `stage`: its queue's batches, with partial failures.

    The batch runs as one (process_batch); each record that failed goes back to the queue alone.
    """
    # A stage no bridge performs fails at import, not at the first message; its bridge loads at init.
    if not callable(registry.stage(stage).bridge):
        raise TypeError(f"the bridge of {stage.value} is not a function")

    def run(records: list[EnvelopeRecord]) -> list[Any]:
        return [r if isinstance(r, Exception) else r[0]
                for r in process_batch([record.body for record in records], stage)]

    return LoggingBatchProcessor(event_type=EventType.SQS, model=EnvelopeRecord, batch_handler=run).handler
