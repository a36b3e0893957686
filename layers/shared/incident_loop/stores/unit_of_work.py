"""The unit of work on PostgreSQL: one connection, one transaction scoped to a tenant, every loop store on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.pq import TransactionStatus

from incident_loop.db import get_connection, set_tenant, transaction
from incident_loop.stores.checkpoints import PostgresCheckpointStore
from incident_loop.stores.incidents import PostgresIncidentStore
from incident_loop.stores.loop_store import PostgresLoopStore
from incident_loop.stores.notifications import PostgresNotifications
from incident_loop.stores.policies import PostgresPolicyStore
from incident_loop.stores.ports import StageQueues
from incident_loop.stores.read_ahead import ReadAhead
from incident_loop.stores.recoveries import PostgresRecoveryStore
from incident_loop.stores.routing import PostgresRoutingStore

if TYPE_CHECKING:
    from incident_loop.stores.patterns import PostgresPatternStore


class PostgresUnitOfWork:
    """The loop's stores on one connection (the container's unless given), and the queues for hand-offs.

    `begin(tenant_id)` is db.transaction: scoped to the tenant (row-level security), bounded by the
    settings' statement and lock timeouts, DatabaseTimeout / DatabaseUnavailable when the database stalls
    or is gone. `batch(tenant_id)` is the same transaction in pipeline mode, for a batch of messages.
    """

    def __init__(self, queues: StageQueues, conn: Connection[Any] | None = None) -> None:
        self.conn = conn or get_connection()
        self.queues = queues
        self.read_ahead = ReadAhead()  # what the stores read for a batch, for the current transaction only
        self.incidents = PostgresIncidentStore(self.conn, self.read_ahead)
        self.loop = PostgresLoopStore(self.conn)
        self.recoveries = PostgresRecoveryStore(self.conn, self.read_ahead)
        self.checkpoints = PostgresCheckpointStore(self.conn)
        self.policies = PostgresPolicyStore(self.conn, self.read_ahead)
        self.routing = PostgresRoutingStore(self.conn, self.read_ahead)
        self.notifications = PostgresNotifications(self.conn, self.read_ahead)

    @cached_property
    def patterns(self) -> PostgresPatternStore:
        """Made when first used: it brings the grouping (the matcher and its compiled rules, 6 to 9 ms of a
        cold start), which only the pattern bridge and the pattern routes need."""
        from incident_loop.stores.patterns import PostgresPatternStore

        return PostgresPatternStore(self.conn, self.read_ahead)

    @contextmanager
    def begin(self, tenant_id: str | None) -> Iterator[PostgresUnitOfWork]:
        """One transaction for the tenant: committed when the block ends, rolled back when it raises."""
        with self._transaction(tenant_id, pipelined=False):
            yield self

    def scope(self, tenant_id: str | None) -> None:
        """The rest of the transaction is the tenant's (row-level security); queued, in a batch's pipeline."""
        set_tenant(self.conn, tenant_id)

    @contextmanager
    def batch(self, tenant_id: str | None) -> Iterator[PostgresUnitOfWork]:
        """begin(), pipelined: what nobody waits for travels with the next read, and COMMIT with the end."""
        with self._transaction(tenant_id, pipelined=True):
            yield self

    @contextmanager
    def _transaction(self, tenant_id: str | None, *, pipelined: bool) -> Iterator[None]:
        self.read_ahead.clear()
        try:
            with transaction(self.conn, tenant_id=tenant_id, pipelined=pipelined):
                yield
        except BaseException:
            self.notifications.discard()  # rolled back: the announcements' runs were never written
            raise
        finally:
            self.read_ahead.clear()  # read under this transaction's locks: worthless after it
        if self.conn.info.transaction_status == TransactionStatus.IDLE:  # not a savepoint inside another one
            self.notifications.flush()  # committed: the runner may now read the runs it is told of
