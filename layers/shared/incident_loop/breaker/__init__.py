"""Circuit breakers, one mechanism (DESIGN.md): state in DynamoDB, conditional transitions, pluggable history.

The container's named breakers, wired with their history and hooks, come from `incident_loop.breakers`:

    from incident_loop import breakers

    breaker = breakers.named(breakers.CATALOG_PERSIST)
    if breaker.allow():
        try:
            write()
        except Exception as exc:
            breaker.record_failure(str(exc))
        else:
            breaker.record_success()
"""

from incident_loop.breaker.breaker import Breaker
from incident_loop.breaker.config import CATALOG_PERSIST, COSTSIM_V2, BreakerConfig, FailMode, config_for
from incident_loop.breaker.history import HistoryWriter, MemoryHistory
from incident_loop.breaker.rules import AnyOf, ConsecutiveFailures, Drift, Trip, TripRule
from incident_loop.breaker.state import BreakerRecord, BreakerState, BreakerStatus, Transition, p95
from incident_loop.breaker.store import BreakerStore, DynamoBreakerStore, StoreUnavailable, ensure_table

__all__ = [
    "CATALOG_PERSIST", "COSTSIM_V2", "AnyOf", "Breaker", "BreakerConfig", "BreakerRecord", "BreakerState",
    "BreakerStatus", "BreakerStore", "ConsecutiveFailures", "Drift", "DynamoBreakerStore", "FailMode",
    "HistoryWriter", "MemoryHistory", "StoreUnavailable", "Transition", "Trip", "TripRule", "config_for",
    "ensure_table", "p95",
]
