"""Breaker history: where transitions are recorded, and what every won transition emits.

The PostgreSQL writer (breaker_history, migration 0005) is `incident_loop.stores.breaker_history`;
`MemoryHistory` serves unit tests and benchmarks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.breaker.state import Transition
from incident_loop.observability import logger, metrics

metrics_lock = threading.Lock()  # Powertools' metric set is a plain dict shared by every thread


class HistoryWriter(Protocol):
    """Where transitions are recorded. A failure raises; the breaker logs it and carries on."""

    def write(self, transition: Transition) -> None: ...


def as_row(t: Transition) -> dict[str, Any]:
    """A transition as a breaker_history row."""
    return {"breaker_name": t.breaker, "from_state": t.from_state.value, "to_state": t.to_state.value,
            "version": t.version, "reason": t.reason, "changed_by": t.changed_by, "details": t.details,
            "created_at": t.at}


class MemoryHistory:
    """In-memory history for unit tests and benchmarks; as idempotent as the table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._seen: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def write(self, transition: Transition) -> None:
        with self._lock:
            key = (transition.breaker, transition.version)
            if key not in self._seen:
                self._seen.add(key)
                self.rows.append(as_row(transition))

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [row for row in self.rows if row["breaker_name"] == name]


def announce(t: Transition, history: HistoryWriter, callbacks: Iterable[Callable[[Transition], None]]) -> None:
    """A transition this process won: metric, log line, history row, callbacks. Never raises."""
    with metrics_lock:
        metrics.add_metric(name="BreakerTransition", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="breaker", value=t.breaker)
        metrics.add_metadata(key="from_state", value=t.from_state.value)
        metrics.add_metadata(key="to_state", value=t.to_state.value)
    logger.info("breaker transition", breaker=t.breaker, from_state=t.from_state.value, to_state=t.to_state.value,
                reason=t.reason, version=t.version, changed_by=t.changed_by)
    try:
        history.write(t)
    except Exception as exc:  # noqa: BLE001 - the transition stands; a lost history row is logged
        logger.error("breaker history write failed", breaker=t.breaker, version=t.version, error=str(exc))
    for callback in callbacks:
        try:
            callback(t)
        except Exception:  # noqa: BLE001 - one hook's bug must not break the guarded call
            logger.exception("breaker transition callback failed", breaker=t.breaker, version=t.version)
