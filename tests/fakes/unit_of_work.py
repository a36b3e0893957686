"""The unit of work in memory: every store, and a transaction that puts everything back when its block raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy

from fakes.learning_stores import MemoryPatternStore, MemoryPolicyStore, MemoryRecoveryStore, MemoryRoutingStore
from fakes.loop_stores import (
    MemoryCheckpointStore,
    MemoryIncidentStore,
    MemoryLoopStore,
    MemoryNotifications,
    MemoryStageQueues,
)

STORES = ("incidents", "loop", "patterns", "recoveries", "checkpoints", "policies", "routing", "notifications")


class MemoryUnitOfWork:
    """A UnitOfWork whose stores live in this object; `queues.sent` is every envelope handed off."""

    def __init__(self) -> None:
        self.incidents = MemoryIncidentStore()
        self.loop = MemoryLoopStore()
        self.patterns = MemoryPatternStore()
        self.recoveries = MemoryRecoveryStore()
        self.checkpoints = MemoryCheckpointStore()
        self.policies = MemoryPolicyStore()
        self.routing = MemoryRoutingStore()
        self.notifications = MemoryNotifications()
        self.queues = MemoryStageQueues()
        self.tenants: list[str | None] = []  # the tenant of every transaction begun, in order
        self.commits = 0
        self.batches = 0  # how many of them were batches
        self.scopes: list[str | None] = []  # every tenant a transaction was scoped to on the way

    def scope(self, tenant_id: str | None) -> None:
        self.scopes.append(tenant_id)

    @contextmanager
    def batch(self, tenant_id: str | None) -> Iterator[MemoryUnitOfWork]:
        self.batches += 1
        with self.begin(tenant_id):
            yield self

    @contextmanager
    def begin(self, tenant_id: str | None) -> Iterator[MemoryUnitOfWork]:
        self.tenants.append(tenant_id)
        saved = {name: deepcopy(vars(getattr(self, name))) for name in STORES}
        try:
            yield self
        except BaseException:
            for name, state in saved.items():  # rolled back: every store as it was
                vars(getattr(self, name)).update(state)
            self.notifications.discard()
            raise
        self.commits += 1
        self.notifications.flush()  # committed: the announcements' messages go out
