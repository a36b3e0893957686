"""Breaker models: states, the DynamoDB item (`BreakerRecord`), its drift p95, transitions, status."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict


class BreakerState(str, Enum):
    CLOSED = "CLOSED"  # calls go through; outcomes are counted
    OPEN = "OPEN"  # calls refused until cooldown_until, then the first caller moves it to HALF_OPEN
    HALF_OPEN = "HALF_OPEN"  # a limited number of probes go through; their outcome closes or re-opens
    DISABLED = "DISABLED"  # an operator switched it off (until enabled, or until disabled_until)


CLOSED, OPEN, HALF_OPEN, DISABLED = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN, \
    BreakerState.DISABLED
# What closing (probe success, enable, an expired disable) resets: a closed breaker starts afresh.
RESET: dict[str, Any] = {"consecutive_failures": 0, "consecutive_drift_failures": 0, "drift_samples": (),
                         "opened_at": None, "cooldown_until": None, "probe_deadline": None,
                         "disabled_until": None, "probes_admitted": 0, "probes_succeeded": 0}


def p95(values: Sequence[float]) -> float:
    """95th percentile, nearest rank (the value at or below which 95% of the samples fall)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _num(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    return format(value, ".6f").rstrip("0").rstrip(".") or "0"


def _parse(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


class BreakerRecord(BaseModel):
    """One breaker's DynamoDB item. Times are epoch seconds; `version` grows by one per transition."""

    model_config = ConfigDict(frozen=True)

    name: str
    state: BreakerState = BreakerState.CLOSED
    version: int = 0
    consecutive_failures: int = 0
    consecutive_drift_failures: int = 0
    drift_samples: tuple[float, ...] = ()
    drift_seq: int = 0  # guards the sample window (optimistic); counts samples written
    opened_at: float | None = None
    cooldown_until: float | None = None
    probe_deadline: float | None = None
    disabled_until: float | None = None
    reason: str | None = None
    changed_by: str | None = None
    changed_at: float | None = None
    probes_admitted: int = 0
    probes_succeeded: int = 0
    # The last trip from CLOSED: an id of its own (versions start again with a new table) and when it happened.
    # Kept when the breaker closes, so a trip whose hook could not file its CostSim incident is filed late even
    # when it is over before the reconciler runs.
    trip_id: str | None = None
    tripped_at: float | None = None

    def to_item(self) -> dict[str, Any]:
        """DynamoDB attribute values; None is left out."""
        item: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, Enum):
                item[key] = {"S": value.value}
            elif isinstance(value, str):
                item[key] = {"S": value}
            elif isinstance(value, tuple | list):
                item[key] = {"L": [{"N": _num(v)} for v in value]}
            else:
                item[key] = {"N": _num(value)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BreakerRecord:
        values: dict[str, Any] = {}
        for key, attr in item.items():
            if key not in cls.model_fields:
                continue
            if "S" in attr:
                values[key] = attr["S"]
            elif "N" in attr:
                values[key] = _parse(attr["N"])
            elif "L" in attr:
                values[key] = tuple(float(v["N"]) for v in attr["L"])
        return cls(**values)

    def disabled(self, now: float) -> bool:
        """DISABLED and not yet expired (an expired disable counts as enabled)."""
        return self.state is BreakerState.DISABLED and (self.disabled_until is None or now < self.disabled_until)

    def effective_state(self, now: float) -> BreakerState:
        if self.state is BreakerState.DISABLED and not self.disabled(now):
            return BreakerState.CLOSED
        return self.state


def _iso(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class Transition(BaseModel):
    """One state change that this process won (what history, metrics and callbacks receive)."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    version: int
    reason: str | None = None
    changed_by: str
    at: datetime
    details: dict[str, Any] = {}

    @classmethod
    def between(cls, old: BreakerRecord, new: BreakerRecord) -> Transition:
        details: dict[str, Any] = {
            "consecutive_failures": old.consecutive_failures,
            "consecutive_drift_failures": old.consecutive_drift_failures,
        }
        if old.drift_samples:
            details["drift_p95"] = round(p95(old.drift_samples), 6)
            details["drift_samples"] = len(old.drift_samples)
        if new.trip_id is not None and new.trip_id != old.trip_id:
            details["trip_id"] = new.trip_id
        for key in ("cooldown_until", "disabled_until", "probe_deadline"):
            value = getattr(new, key)
            if value is not None:
                details[key] = _iso(value).isoformat()  # type: ignore[union-attr]
        return cls(breaker=new.name, from_state=old.state, to_state=new.state, version=new.version,
                   reason=new.reason, changed_by=new.changed_by or "unknown",
                   at=_iso(new.changed_at) or datetime.now(UTC), details=details)


class BreakerStatus(BaseModel):
    """A breaker as operators and the health endpoint see it."""

    name: str
    state: BreakerState  # effective: an expired disable reads CLOSED
    stored_state: BreakerState
    version: int
    reason: str | None
    changed_by: str | None
    changed_at: datetime | None
    opened_at: datetime | None
    cooldown_until: datetime | None
    disabled_until: datetime | None
    consecutive_failures: int
    consecutive_drift_failures: int
    drift_p95: float | None
    drift_samples: int
    probes_admitted: int
    probes_succeeded: int

    @classmethod
    def of(cls, record: BreakerRecord, now: float) -> BreakerStatus:
        return cls(
            name=record.name, state=record.effective_state(now), stored_state=record.state,
            version=record.version, reason=record.reason, changed_by=record.changed_by,
            changed_at=_iso(record.changed_at), opened_at=_iso(record.opened_at),
            cooldown_until=_iso(record.cooldown_until), disabled_until=_iso(record.disabled_until),
            consecutive_failures=record.consecutive_failures,
            consecutive_drift_failures=record.consecutive_drift_failures,
            drift_p95=round(p95(record.drift_samples), 6) if record.drift_samples else None,
            drift_samples=len(record.drift_samples), probes_admitted=record.probes_admitted,
            probes_succeeded=record.probes_succeeded,
        )
