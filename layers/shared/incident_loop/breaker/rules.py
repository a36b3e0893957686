"""Trip rules: when a CLOSED breaker opens. Pure functions of the stored record, pluggable via `TripRule`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from incident_loop.breaker.state import BreakerRecord, p95


@dataclass(frozen=True)
class Trip:
    """A rule's verdict: open, why, and (optionally) for how long instead of the breaker's cooldown."""

    reason: str
    cooldown_s: float | None = None


class TripRule(Protocol):
    """Decides, from the record just written, whether a CLOSED breaker opens."""

    @property
    def samples(self) -> int:
        """How many recent drift samples the store must keep for this rule (0: none)."""
        ...

    def drift_failure(self, value: float) -> bool:
        """Whether one drift sample counts as a drift failure."""
        ...

    def should_trip(self, record: BreakerRecord) -> Trip | None: ...


def _cooldown(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"cooldown_s must be a finite number of seconds > 0 (or None), not {value!r}")


@dataclass(frozen=True)
class ConsecutiveFailures:
    """Seeds 002 and 004: `threshold` consecutive failures open the breaker for `cooldown_s`."""

    threshold: int = 5
    cooldown_s: float | None = 60.0

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {self.threshold!r}")
        _cooldown(self.cooldown_s)

    @property
    def samples(self) -> int:
        return 0

    def drift_failure(self, value: float) -> bool:
        return False

    def should_trip(self, record: BreakerRecord) -> Trip | None:
        if record.consecutive_failures >= self.threshold:
            return Trip(f"{record.consecutive_failures} consecutive failures (threshold {self.threshold})",
                        self.cooldown_s)
        return None


# The fewest samples whose nearest-rank p95 is not their largest (ceil(0.95 n) < n from n = 20): over 10 to 19
# samples "p95 > 0.2" would be "any one sample > 0.2", and one drifting plan would trip V2 (the window starts afresh
# at every close, so every recovery would begin on that hair trigger).
MIN_P95_SAMPLES = 20


def p95_min_samples(rule: object) -> int | None:
    """The fewest drift samples over which `rule` judges their p95 (a Drift's, or the least of an AnyOf's Drifts),
    or None when it judges none: what a gauge of that p95 waits for too, so the gauge pages on what trips."""
    if isinstance(rule, Drift):
        return rule.min_samples if rule.p95_threshold is not None else None
    found = [n for n in map(p95_min_samples, getattr(rule, "rules", ())) if n is not None]
    return min(found, default=None)


@dataclass(frozen=True)
class Drift:
    """Seed 001 (CostSim V2): p95 drift over the last `window` samples above `p95_threshold`, or
    `consecutive` samples in a row above `sample_threshold`. Either check may be turned off with None."""

    p95_threshold: float | None = 0.2
    window: int = 50
    min_samples: int = MIN_P95_SAMPLES
    sample_threshold: float = 0.2
    consecutive: int | None = 3
    cooldown_s: float | None = None

    def __post_init__(self) -> None:
        # A window smaller than min_samples never holds enough samples: the p95 check could never trip.
        if not 1 <= self.min_samples <= self.window:
            raise ValueError(f"min_samples must be between 1 and window ({self.window}), not {self.min_samples!r}")
        for name in ("p95_threshold", "sample_threshold"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        if self.consecutive is not None and self.consecutive < 1:
            raise ValueError(f"consecutive must be at least 1 (or None), not {self.consecutive!r}")
        _cooldown(self.cooldown_s)

    @property
    def samples(self) -> int:
        return self.window if self.p95_threshold is not None else 0

    def drift_failure(self, value: float) -> bool:
        return value > self.sample_threshold

    def should_trip(self, record: BreakerRecord) -> Trip | None:
        if self.consecutive is not None and record.consecutive_drift_failures >= self.consecutive:
            return Trip(f"{record.consecutive_drift_failures} consecutive drift failures "
                        f"(> {self.sample_threshold})", self.cooldown_s)
        recent = record.drift_samples[-self.window:]
        if self.p95_threshold is not None and len(recent) >= self.min_samples:
            value = p95(recent)
            if value > self.p95_threshold:
                return Trip(f"drift p95 {value:.3f} > {self.p95_threshold} over {len(recent)} samples",
                            self.cooldown_s)
        return None


@dataclass(frozen=True)
class AnyOf:
    """Trips when any of its rules trips (the first one's verdict wins)."""

    rules: tuple[TripRule, ...] = field(default_factory=tuple)

    @property
    def samples(self) -> int:
        return max((rule.samples for rule in self.rules), default=0)

    def drift_failure(self, value: float) -> bool:
        return any(rule.drift_failure(value) for rule in self.rules)

    def should_trip(self, record: BreakerRecord) -> Trip | None:
        for rule in self.rules:
            verdict = rule.should_trip(record)
            if verdict is not None:
                return verdict
        return None
