"""The catalog-persist breaker (5 consecutive failures open it for 60 s), as persistence uses it."""

from __future__ import annotations

from functools import cache

from incident_loop.failures.persist import PersistGuard


@cache
def persist_guard() -> PersistGuard | None:
    """The container's catalog-persist breaker; None until the shared breaker is wired in."""
    try:
        from incident_loop.breaker.wiring import catalog_persist_guard
    except ImportError:
        return None
    return catalog_persist_guard()
