"""The unit of work on PostgreSQL: one connection, one transaction scoped to a tenant, every loop store on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import Connection

from incident_loop.db import get_connection, transaction
from incident_loop.stores.checkpoints import PostgresCheckpointStore
from incident_loop.stores.incidents import PostgresIncidentStore
from incident_loop.stores.loop_store import PostgresLoopStore
from incident_loop.stores.patterns import PostgresPatternStore
from incident_loop.stores.policies import PostgresPolicyStore
from incident_loop.stores.ports import StageQueues
from incident_loop.stores.recoveries import PostgresRecoveryStore
from incident_loop.stores.routing import PostgresRoutingStore


class PostgresUnitOfWork:
    """The loop's stores on one connection (the container's unless given), and the queues for hand-offs.

    `begin(tenant_id)` is db.transaction: scoped to the tenant (row-level security), bounded by the
    settings' statement and lock timeouts, DatabaseTimeout / DatabaseUnavailable when the database stalls
    or is gone.
    """

    def __init__(self, queues: StageQueues, conn: Connection[Any] | None = None) -> None:
        self.conn = conn or get_connection()
        self.queues = queues
        self.incidents = PostgresIncidentStore(self.conn)
        self.loop = PostgresLoopStore(self.conn)
        self.patterns = PostgresPatternStore(self.conn)
        self.recoveries = PostgresRecoveryStore(self.conn)
        self.checkpoints = PostgresCheckpointStore(self.conn)
        self.policies = PostgresPolicyStore(self.conn)
        self.routing = PostgresRoutingStore(self.conn)

    @contextmanager
    def begin(self, tenant_id: str | None) -> Iterator[PostgresUnitOfWork]:
        """One transaction for the tenant: committed when the block ends, rolled back when it raises."""
        with transaction(self.conn, tenant_id=tenant_id):
            yield self
