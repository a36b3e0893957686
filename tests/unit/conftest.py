"""Fixtures of the unit tests: the loop on in-memory stores."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.driver import MemoryLoop

from incident_loop.loop import ingest


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> MemoryLoop:
    """A tenant's loop on in-memory stores. Ingest's write to the failure catalog (seed 002, its own
    store and breaker) is recorded here instead: the loop's rules do not read it."""
    written: list[Any] = []
    monkeypatch.setattr(ingest, "persist_guard", lambda: None)
    monkeypatch.setattr(ingest, "persist_failure", lambda failure, guard: written.append(failure))
    memory = MemoryLoop()
    memory.failures = written  # type: ignore[attr-defined]
    return memory
