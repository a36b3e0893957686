"""Circuit breakers, one mechanism (DESIGN.md): state in DynamoDB, conditional transitions, history in PostgreSQL.

    from incident_loop.breaker import get_breaker

    breaker = get_breaker("catalog-persist")
    if breaker.allow():
        try:
            write()
        except Exception as exc:
            breaker.record_failure(str(exc))
        else:
            breaker.record_success()
"""

from incident_loop.breaker.breaker import Breaker, get_breaker
from incident_loop.breaker.history import HistoryWriter, MemoryHistory, PostgresHistory
from incident_loop.breaker.rules import AnyOf, ConsecutiveFailures, Drift, Trip, TripRule, p95
from incident_loop.breaker.state import (
    BreakerConfig,
    BreakerRecord,
    BreakerState,
    BreakerStatus,
    FailMode,
    Transition,
    config_for,
)
from incident_loop.breaker.store import (
    BreakerStore,
    DynamoBreakerStore,
    StoreUnavailable,
    dynamodb_client,
    ensure_table,
)

__all__ = [
    "AnyOf", "Breaker", "BreakerConfig", "BreakerRecord", "BreakerState", "BreakerStatus", "BreakerStore",
    "ConsecutiveFailures", "Drift", "DynamoBreakerStore", "FailMode", "HistoryWriter", "MemoryHistory",
    "PostgresHistory", "StoreUnavailable", "Transition", "Trip", "TripRule", "config_for", "dynamodb_client",
    "ensure_table", "get_breaker", "p95",
]
