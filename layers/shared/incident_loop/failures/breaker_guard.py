"""The catalog-persist breaker (5 consecutive failures open it for 60 s), as persistence uses it."""

from __future__ import annotations

from typing import Protocol

from incident_loop import breakers


class PersistGuard(Protocol):
    """What persistence needs of the catalog-persist breaker."""

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self, reason: str) -> None: ...


def persist_guard() -> PersistGuard:
    """The container's catalog-persist breaker, with its alerts wired."""
    return breakers.named(breakers.CATALOG_PERSIST)
