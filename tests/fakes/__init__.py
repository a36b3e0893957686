"""In-memory fakes of the loop's stores and unit of work (incident_loop.stores.ports), for unit tests.

They keep the PostgreSQL stores' semantics where the rules depend on them: one row per unique key
(a repeat returns the stored row), tenant scoping, the trace moves of record(), and a transaction
that rolls back when its block raises.
"""

from fakes.learning_stores import MemoryPatternStore, MemoryPolicyStore, MemoryRecoveryStore, MemoryRoutingStore
from fakes.loop_stores import MemoryCheckpointStore, MemoryIncidentStore, MemoryLoopStore, MemoryStageQueues
from fakes.unit_of_work import MemoryUnitOfWork

__all__ = ["MemoryCheckpointStore", "MemoryIncidentStore", "MemoryLoopStore", "MemoryPatternStore",
           "MemoryPolicyStore", "MemoryRecoveryStore", "MemoryRoutingStore", "MemoryStageQueues",
           "MemoryUnitOfWork"]
