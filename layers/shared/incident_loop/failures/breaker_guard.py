"""The catalog-persist breaker (5 consecutive failures open it for 60 s), as persistence uses it."""

from __future__ import annotations

from incident_loop.failures.persist import PersistGuard


def persist_guard() -> PersistGuard:
    """The container's catalog-persist breaker, with its alerts wired."""
    from incident_loop.breaker_alerts import wired

    return wired("catalog-persist")
