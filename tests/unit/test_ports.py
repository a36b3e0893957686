"""The PostgreSQL stores and the in-memory fakes implement the same ports, method for method."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import fakes
import pytest

from incident_loop.stores import ports
from incident_loop.stores.checkpoints import PostgresCheckpointStore
from incident_loop.stores.incidents import PostgresIncidentStore
from incident_loop.stores.loop_store import PostgresLoopStore
from incident_loop.stores.patterns import PostgresPatternStore
from incident_loop.stores.policies import PostgresPolicyStore
from incident_loop.stores.queues import SqsStageQueues
from incident_loop.stores.recoveries import PostgresRecoveryStore
from incident_loop.stores.routing import PostgresRoutingStore
from incident_loop.stores.unit_of_work import PostgresUnitOfWork

IMPLEMENTATIONS = [
    (ports.IncidentStore, PostgresIncidentStore, fakes.MemoryIncidentStore),
    (ports.LoopStore, PostgresLoopStore, fakes.MemoryLoopStore),
    (ports.PatternStore, PostgresPatternStore, fakes.MemoryPatternStore),
    (ports.RecoveryStore, PostgresRecoveryStore, fakes.MemoryRecoveryStore),
    (ports.CheckpointStore, PostgresCheckpointStore, fakes.MemoryCheckpointStore),
    (ports.PolicyStore, PostgresPolicyStore, fakes.MemoryPolicyStore),
    (ports.RoutingStore, PostgresRoutingStore, fakes.MemoryRoutingStore),
    (ports.StageQueues, SqsStageQueues, fakes.MemoryStageQueues),
]


def _members(protocol: type) -> dict[str, Any]:
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(("port", "postgres", "memory"), IMPLEMENTATIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_both_stores_have_every_method_of_their_port_with_its_parameters(port: type, postgres: type,
                                                                         memory: type) -> None:
    for name, method in _members(port).items():
        for implementation in (postgres, memory):
            assert hasattr(implementation, name), f"{implementation.__name__} has no {name}"
            assert _parameters(getattr(implementation, name)) == _parameters(method), (implementation, name)


def test_both_units_of_work_hand_out_every_store_and_begin_a_transaction() -> None:
    members = _members(ports.UnitOfWork)
    stores = [name for name, value in members.items() if isinstance(value, property)]
    assert set(stores) == {"incidents", "loop", "patterns", "recoveries", "checkpoints", "policies", "routing",
                           "notifications", "queues"}
    assigned = inspect.getsource(PostgresUnitOfWork.__init__)
    for name in stores:  # made in __init__, or when first used (the pattern store brings the grouping)
        lazy = isinstance(inspect.getattr_static(PostgresUnitOfWork, name, None), functools.cached_property)
        assert f"self.{name} = " in assigned or lazy, name
        assert hasattr(fakes.MemoryUnitOfWork(), name), name
    for implementation in (PostgresUnitOfWork, fakes.MemoryUnitOfWork):
        assert _parameters(implementation.begin) == _parameters(ports.UnitOfWork.begin)
