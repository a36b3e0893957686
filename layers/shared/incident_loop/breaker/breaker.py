"""The circuit breaker: allow(), outcomes, drift, manual disable/enable; state in one DynamoDB item.

Every transition is one conditional write on the version this process read, so of any number of
racing workers exactly one wins; the losers get the winner's item back from their failed write. Reads
are cached per breaker for `cache_ttl_s`. A transition this process wins is logged, counted
(`BreakerTransition`), written to the history and passed to the `on_transition` callbacks.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.breaker.config import BreakerConfig, FailMode
from incident_loop.breaker.history import HistoryWriter, announce, metrics_lock
from incident_loop.breaker.rules import Trip
from incident_loop.breaker.state import (
    CLOSED,
    DISABLED,
    HALF_OPEN,
    OPEN,
    RESET,
    BreakerRecord,
    BreakerState,
    BreakerStatus,
    Transition,
)
from incident_loop.breaker.store import BreakerStore, CachedRecord, DynamoBreakerStore, StoreUnavailable
from incident_loop.observability import logger, metrics

ATTEMPTS = 10  # re-reads after lost races before giving up on one call; each loss means someone else won


class Breaker:
    """One named breaker as seen from this process (`incident_loop.breakers` builds the container's own)."""

    def __init__(self, name: str, config: BreakerConfig | None = None, *, store: BreakerStore | None = None,
                 history: HistoryWriter, on_transition: Iterable[Callable[[Transition], None]] = (),
                 clock: Callable[[], float] = time.time, worker: str | None = None) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.store: BreakerStore = store if store is not None else DynamoBreakerStore()
        self.history = history
        self.on_transition: list[Callable[[Transition], None]] = list(on_transition)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._lock = threading.Lock()
        self._record = CachedRecord(self.store, name, self.config.cache_ttl_s, clock, self.worker)
        self._down_until = -math.inf
        self._probes: dict[int, int] = {}  # HALF_OPEN version -> probes this process holds

    # ------------------------------------------------------------------ the guard's API

    def allow(self) -> bool:
        """May a call go through now? At most one GetItem per cache_ttl_s, plus a write when it moves state."""
        return self._guarded("allow", self._allow, self.config.fail_mode is FailMode.OPEN)

    def record_success(self) -> None:
        """A guarded call succeeded: resets the failure count, or (a probe's) closes a HALF_OPEN breaker."""
        self._guarded("record_success", self._success, None)

    def record_failure(self, reason: str = "failure") -> None:
        """A guarded call failed: counted, and the trip rule decides; a probe's failure re-opens."""
        self._guarded("record_failure", lambda: self._failure(reason), None)

    def report_drift(self, value: float) -> None:
        """One drift sample (seed 001): kept in the window, judged by the rule; a probe's sample decides it."""
        if not math.isfinite(value):
            logger.warning("breaker drift sample ignored", breaker=self.name, value=str(value))
            return
        self._guarded("report_drift", lambda: self._drift(value), None)

    def disable(self, reason: str, by: str, until: datetime | None = None) -> BreakerStatus:
        """Switch the breaker off (until `until`, or until enabled). Raises StoreUnavailable, and ValueError
        for an `until` already past (it paged and read as CLOSED at once)."""
        if until is not None and until.timestamp() <= self._clock():
            raise ValueError(f"disable until {until.isoformat()}: that time has passed")
        extra = {"disabled_until": until.timestamp() if until else None, "probes_admitted": 0}
        return self._force(DISABLED, reason, by, extra)

    def enable(self, by: str, reason: str | None = None) -> BreakerStatus:
        """Close the breaker, whatever its state, with fresh counters. Raises StoreUnavailable."""
        return self._force(CLOSED, reason or "enabled", by, RESET)

    def status(self, fresh: bool = True) -> BreakerStatus:
        """The breaker as it is (fresh) or as this process last saw it. Raises StoreUnavailable."""
        return BreakerStatus.of(self._record.get(fresh), self._clock())

    def refresh(self) -> BreakerRecord:
        """Read the item now, bypassing the cache."""
        return self._record.get(fresh=True)

    def cached(self) -> BreakerRecord | None:
        """What this process last saw (no call)."""
        return self._record.current

    # ------------------------------------------------------------------ decisions

    def _allow(self) -> bool:
        record = self._record.get()
        for _ in range(ATTEMPTS):
            now = self._clock()
            if record.state is CLOSED:
                return True
            if record.state is DISABLED:
                if record.disabled(now):
                    return False
                _, record = self._transition(record, CLOSED, "disable expired", RESET)
                continue  # CLOSED now, unless an operator disabled it again meanwhile
            if record.state is OPEN:
                if record.cooldown_until is not None and now < record.cooldown_until:
                    return False
                # Auto-recovery: the first caller after the cooldown moves it to HALF_OPEN and is its first probe.
                won, record = self._transition(record, HALF_OPEN, "cooldown elapsed", self._half_open(now))
            elif record.probes_admitted < self.config.half_open_probes:
                result = self.store.admit_probe(self.name, record.version, self.config.half_open_probes)
                won, record = result.ok, self._record.settle(result)
            elif record.probe_deadline is not None and now >= record.probe_deadline:
                # Every probe slot is taken and none reported in time: presume them lost, take a new one.
                won, record = self._transition(record, HALF_OPEN, "probe timed out", self._half_open(now))
            else:
                return False
            if won:
                self._hold_probe(record.version)
                return True
        return False

    def _success(self) -> None:
        record = self._record.get()
        if record.state is HALF_OPEN:
            if not self._release_probe(record.version):
                return
            if record.probes_succeeded + 1 < self.config.half_open_probes:
                result = self.store.probe_succeeded(self.name, record.version)
                record = self._record.settle(result)
                if not result.ok or record.probes_succeeded < self.config.half_open_probes:
                    return
            self._transition(record, CLOSED, "probe succeeded", RESET)
        elif record.state is CLOSED and record.consecutive_failures:
            # Written only when this process's view (at most cache_ttl_s old) has a count to reset.
            self._record.settle(self.store.reset_failures(self.name, record.version))

    def _failure(self, reason: str) -> None:
        record = self._record.get()
        for _ in range(ATTEMPTS):
            if record.state is HALF_OPEN:
                if self._release_probe(record.version):
                    self._trip(record, Trip(f"probe failed: {reason}"))
                return
            if record.state is not CLOSED:
                return
            result = self.store.add_failure(self.name, record.version)
            record = self._record.settle(result)
            if result.ok:
                verdict = self.config.rule.should_trip(record)
                if verdict is not None:
                    self._trip(record, Trip(f"{verdict.reason}; last: {reason}", verdict.cooldown_s))
                return

    def _drift(self, value: float) -> None:
        record = self._record.get()
        failure = self.config.rule.drift_failure(value)
        if record.state is HALF_OPEN:
            if failure:
                self._failure(f"drift {value:.3f}")
            else:
                self._success()
            return
        for _ in range(ATTEMPTS):
            if record.state is not CLOSED:
                return
            keep = self.config.rule.samples
            samples = (record.drift_samples + (value,))[-keep:] if keep else ()
            streak = record.consecutive_drift_failures + 1 if failure else 0
            result = self.store.put_samples(self.name, record.version, record.drift_seq, samples, streak)
            record = self._record.settle(result)
            if result.ok:
                verdict = self.config.rule.should_trip(record)
                if verdict is not None:
                    self._trip(record, verdict)
                return
        with metrics_lock:
            metrics.add_metric(name="BreakerSampleDropped", unit=MetricUnit.Count, value=1)
        logger.warning("breaker drift sample dropped after lost races", breaker=self.name, value=value)

    def _trip(self, record: BreakerRecord, verdict: Trip) -> None:
        now = self._clock()
        cooldown = verdict.cooldown_s if verdict.cooldown_s is not None else self.config.cooldown_s
        # A new outage (from CLOSED) is a new trip; a failed probe re-opens the same one.
        trip = {"trip_id": uuid.uuid4().hex, "tripped_at": now} if record.state is CLOSED else {}
        self._transition(record, OPEN, verdict.reason, {
            "opened_at": now, "cooldown_until": now + cooldown, "probe_deadline": None,
            "probes_admitted": 0, "probes_succeeded": 0, **trip})

    def _half_open(self, now: float) -> dict[str, Any]:
        return {"probes_admitted": 1, "probes_succeeded": 0, "probe_deadline": now + self.config.probe_timeout_s}

    def _force(self, to: BreakerState, reason: str, by: str, changes: dict[str, Any]) -> BreakerStatus:
        record = self._record.get(fresh=True)
        for _ in range(ATTEMPTS):
            if to is CLOSED and record.state is CLOSED:
                break
            won, record = self._transition(record, to, reason, changes, by=by)
            if won:
                break
        else:
            raise StoreUnavailable(f"breaker {self.name} kept changing under {by}'s {to.value}")
        return BreakerStatus.of(record, self._clock())

    # ------------------------------------------------------------------ store, cache, emission

    def _guarded(self, operation: str, action: Callable[[], Any], fallback: Any) -> Any:
        if self._clock() < self._down_until:
            return fallback
        try:
            return action()
        except StoreUnavailable as exc:
            self._down_until = self._clock() + self.config.cache_ttl_s
            with metrics_lock:
                metrics.add_metric(name="BreakerStoreUnavailable", unit=MetricUnit.Count, value=1)
            logger.warning("breaker store unavailable", breaker=self.name, operation=operation,
                           fail_mode=self.config.fail_mode.value, error=str(exc))
            return fallback

    def _hold_probe(self, version: int) -> None:
        with self._lock:
            self._probes = {version: self._probes.get(version, 0) + 1}

    def _release_probe(self, version: int) -> bool:
        with self._lock:
            if self._probes.get(version, 0) <= 0:
                return False
            self._probes[version] -= 1
            return True

    def _transition(self, record: BreakerRecord, to: BreakerState, reason: str, changes: dict[str, Any],
                    by: str | None = None) -> tuple[bool, BreakerRecord]:
        """One conditional write from `record`; (won, the record now)."""
        new = record.model_copy(update={**changes, "state": to, "version": record.version + 1, "reason": reason,
                                        "changed_by": by or self.worker, "changed_at": self._clock()})
        result = self.store.replace(new, record.version)
        if not result.ok and not _ours(new, result.record):
            return False, self._record.settle(result)
        self._record.remember(new)
        announce(Transition.between(record, new), self.history, self.on_transition)
        return True, new


def _ours(new: BreakerRecord, found: BreakerRecord | None) -> bool:
    """Whether the item a failed condition returned is the one this write put: the SDK retried a PutItem whose
    response was lost, and the retry failed its condition on the first attempt's own write (the transition
    was taken for lost: no alert, metric or history row, or a probe slot held by nobody)."""
    if found is None:
        return False
    written = BreakerRecord.from_item(new.to_item())  # as DynamoDB gives it back (times to the microsecond)
    return (found.version, found.state, found.changed_by, found.changed_at, found.reason) == (
        written.version, written.state, written.changed_by, written.changed_at, written.reason)
