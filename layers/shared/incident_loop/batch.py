"""The batch processor every SQS consumer uses: partial failures, every failure logged, and a bounded batch.

A consumer must fail its batch well before its function timeout, so the records go back to SQS
instead of the invocation dying with them. Two rules give that bound:

* once a record finds the database unavailable or stalled (DatabaseUnavailable, DatabaseTimeout),
  the rest of the batch fails without being tried: each try would only wait out the same bound;
* no record starts once the invocation has less left than one record's worst case (a connect plus
  a statement, from the settings).

A consumer that works set-based gives a `batch_handler`: it gets every record that parsed, at once,
and answers each with its result or its exception (one transaction and one send for the batch, say).
Powertools then reports each record as usual: a poison record fails at parsing, before the batch
handler sees it, and a record the batch handler failed goes back to the queue alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from incident_loop.db import DatabaseConflict, DatabaseLockWait, DatabaseUnavailable
from incident_loop.observability import logger, metrics
from incident_loop.schemas.envelope import EnvelopeRecord
from incident_loop.settings import get_settings

# How long a set-based batch may spend running its tenants apart after a lock wait (each contended tenant waits out
# the lock_timeout again, loop/stage.py and loop/ingest.py): the tenants left then are left for redelivery, so the
# batch ends inside the function's 30 s with its hand-off.
APART_BUDGET_S = 6.0
T = TypeVar("T")


class NotAttempted(RuntimeError):
    """A record of a batch that was failed without being tried (SQS delivers it again)."""


def each_tenant_apart(items: Sequence[T], tenant_of: Callable[[T], str],
                      run: Callable[[list[T]], Sequence[Any]]) -> list[Any]:
    """run() for each tenant's items by themselves, their answers in the items' order: after a lock wait, a tenant
    whose rows or keys are held elsewhere waits (its items fail and come back) and the others go through. Once
    APART_BUDGET_S is spent, or an answer says the database is unavailable for another reason than a lock held
    elsewhere or a lost race, the rest are left for redelivery untried."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(tenant_of(item), []).append(i)
    answers: list[Any] = [None] * len(items)
    down: str | None = None
    deadline = time.monotonic() + APART_BUDGET_S
    for indexes in groups.values():
        if down is None and time.monotonic() > deadline:
            down = "the batch's time for its tenants apart is spent"
        if down is not None:
            got: Sequence[Any] = [NotAttempted(f"{down}; left for redelivery")] * len(indexes)
        else:
            got = run([items[i] for i in indexes])
            stalled = next((a for a in got if isinstance(a, DatabaseUnavailable)
                            and not isinstance(a, DatabaseLockWait | DatabaseConflict)), None)
            if stalled is not None:
                down = f"the database is unavailable ({stalled})"
        for i, answer in zip(indexes, got, strict=True):
            answers[i] = answer
    return answers


def log_context(incident_id: str | None, tenant_id: str | None, stage: str | None) -> None:
    """The incident is the correlation id of every log line about it."""
    logger.set_correlation_id(incident_id)
    if incident_id is None:
        logger.remove_keys(["incident_id", "tenant_id", "stage"])
    else:
        logger.append_keys(incident_id=incident_id, tenant_id=tenant_id, stage=stage)


def record_reserve_ms() -> int:
    """One record's worst case against a stalled database: a connect and a statement, each at its bound."""
    settings = get_settings()
    return settings.db_connect_timeout_s * 1000 + settings.db_statement_timeout_ms


# Answers every parsed record of a batch at once: for each, in order, its result or its exception.
BatchHandler = Callable[[list[Any]], list[Any]]


class LoggingBatchProcessor(BatchProcessor):
    """A batch processor that logs why each failed record failed (poison messages reach the DLQ),
    and fails the rest of a batch once the database is unavailable or time runs short."""

    def __init__(self, event_type: EventType, model: Any = None, *, batch_handler: BatchHandler | None = None,
                 reserve_ms: Callable[[], int] = record_reserve_ms, **kwargs: Any) -> None:
        """`reserve_ms`: one record's worst case; no record is started with less time left in the invocation
        (the database's by default; a consumer that waits on something slower gives its own)."""
        super().__init__(event_type=event_type, model=model, **kwargs)
        self._batch_handler = batch_handler
        self._reserve_ms = reserve_ms

    def _prepare(self) -> None:
        super()._prepare()
        self._unavailable: DatabaseUnavailable | None = None
        self._answers: dict[str, Any] | None = None

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda handler of a consumer with a batch_handler: the event's records, partial failures."""
        return process_partial_response(event=event, record_handler=self._answer, processor=self, context=context)

    def _answer(self, record: Any) -> Any:
        """A record's answer from the batch handler (raised when it is an exception)."""
        answer = (self._answers or {}).get(record.messageId, NotAttempted("not answered by the batch"))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def process(self) -> list[tuple[Any, ...]]:
        if self._batch_handler is not None:
            self._answers = self._run_batch(self._batch_handler)
        return super().process()

    def _run_batch(self, batch_handler: BatchHandler) -> dict[str, Any]:
        parsed = []
        for raw in self.records:
            try:
                parsed.append(self._to_batch_type(record=raw, event_type=self.event_type, model=self.model))
            except Exception:  # noqa: BLE001, S112 - Powertools reports it when it parses the record again
                continue
        if not parsed:
            return {}
        short = self._too_late()
        try:
            answers = [NotAttempted(short)] * len(parsed) if short else batch_handler(parsed)
        except Exception as exc:  # noqa: BLE001 - the batch's failure is each record's, reported for each
            answers = [exc] * len(parsed)
        return {record.messageId: answer for record, answer in zip(parsed, answers, strict=True)}

    def _too_late(self) -> str | None:
        context = getattr(self, "lambda_context", None)
        if context is not None and context.get_remaining_time_in_millis() < self._reserve_ms():
            return "too little time left in this invocation; left for redelivery"
        return None

    def __call__(self, records: list[dict[str, Any]], handler: Callable[..., Any],
                 lambda_context: Any = None) -> LoggingBatchProcessor:
        return super().__call__(records, self._bounded(handler), lambda_context)

    def _bounded(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)  # keeps the signature Powertools inspects for lambda_context
        def bounded(record: Any, **kwargs: Any) -> Any:
            if self._answers is not None:  # the batch handler did the work, under the same rules
                return handler(record=record, **kwargs)
            if self._unavailable is not None:
                raise NotAttempted(f"the database is unavailable ({self._unavailable}); left for redelivery")
            short = self._too_late()
            if short:
                raise NotAttempted(short)
            try:
                return handler(record=record, **kwargs)
            except DatabaseConflict:  # lost a race: this record's alone, the next ones may pass
                raise
            except DatabaseUnavailable as exc:
                self._unavailable = exc
                raise

        return bounded

    def failure_handler(self, record: Any, exception: Any) -> Any:
        exc_type, exc_value, _ = exception
        # Log under the failed record's own incident (never the previous record's keys).
        if isinstance(record, EnvelopeRecord):
            log_context(record.body.incident_id, record.body.tenant_id, record.body.stage.value)
        else:
            log_context(None, None, None)
        # A parsed record is a model, a record that failed parsing is Powertools' SQSRecord.
        raw = getattr(record, "raw_event", None) or (record if isinstance(record, dict) else record.model_dump())
        message_id = raw.get("messageId")
        receives = (raw.get("attributes") or {}).get("ApproximateReceiveCount")
        logger.error(
            "record failed",
            message_id=message_id,
            receive_count=receives,
            reason=f"{getattr(exc_type, '__name__', exc_type)}: {exc_value}",
        )
        metrics.add_metric(name="LoopRecordFailed", unit=MetricUnit.Count, value=1)
        return super().failure_handler(record, exception)
