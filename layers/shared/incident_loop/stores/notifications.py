"""The tenants' notification targets, and announcements queued as workflow runs, in PostgreSQL.

An announcement is a workflow run per target (m11_audit.workflow_runs) written in the caller's transaction,
with an id derived from what it announces and the target: a retried stage or request finds the run already
there. Its message to the workflow queue is held until that transaction commits (the unit of work sends it
then, and drops it on a rollback), so the runner is never told of a run that was not committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from incident_loop.stores.read_ahead import MISSING, ReadAhead

if TYPE_CHECKING:  # the models load when a tenant has targets, not at every stage function's init
    from incident_loop.schemas.loop.enums import NotificationEvent
    from incident_loop.schemas.notifications import NotificationSetting, NotificationTargets
    from incident_loop.schemas.workflows import WorkflowMessage


class PostgresNotifications:
    """NotificationOutbox on one connection; statements run in the caller's transaction.

    Targets are read once per transaction (a batch's checkpoints share one read); the run's INSERT waits for
    no answer, so in a pipelined batch it travels with the next read or the COMMIT. `flush` after the
    commit sends what `submit` queued; `discard` after a rollback forgets it.
    """

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None, queue: Any | None = None) -> None:
        self.conn = conn
        self.read_ahead = read_ahead or ReadAhead()
        self._queue = queue
        self.pending: list[WorkflowMessage] = []

    def targets(self, tenant_id: str, event: NotificationEvent) -> NotificationTargets | None:
        """The event's targets for the tenant, or None when it sends nothing."""
        known = self.read_ahead.get("notification_targets", (tenant_id, event.value))
        if known is not MISSING:
            return known  # type: ignore[no-any-return]
        row = self.conn.execute(
            "SELECT targets FROM notification_targets WHERE tenant_id = %s AND event = %s",
            (tenant_id, event.value)).fetchone()
        from incident_loop.schemas.notifications import NotificationTargets

        found = None if row is None else NotificationTargets.model_validate(row["targets"])
        self.read_ahead.put("notification_targets", (tenant_id, event.value), found)
        return found

    def all(self, tenant_id: str) -> list[NotificationSetting]:
        """Every event the tenant has targets for."""
        from incident_loop.schemas.notifications import NotificationSetting

        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT event, targets, updated_by, updated_at FROM notification_targets"
                               " WHERE tenant_id = %s ORDER BY event", (tenant_id,)).fetchall()
        return [NotificationSetting.model_validate(row) for row in rows]

    def put(self, tenant_id: str, event: NotificationEvent, targets: NotificationTargets, by: str | None) -> None:
        """Set (or replace) the event's targets."""
        self.read_ahead.drop("notification_targets")
        self.conn.execute(
            "INSERT INTO notification_targets (tenant_id, event, targets, updated_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, event) DO UPDATE SET targets = EXCLUDED.targets,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            (tenant_id, event.value, Jsonb(targets.model_dump(mode="json", exclude_none=True)), by))

    def remove(self, tenant_id: str, event: NotificationEvent) -> bool:
        """Stop announcing the event; whether it had targets."""
        self.read_ahead.drop("notification_targets")
        cur = self.conn.execute("DELETE FROM notification_targets WHERE tenant_id = %s AND event = %s",
                                (tenant_id, event.value))
        return cur.rowcount > 0

    def submit(self, run_id: str, tenant_id: str, name: str, definition: Mapping[str, Any]) -> None:
        """Write the announcement's run (once per id); its message waits for the commit (flush)."""
        from incident_loop.schemas.workflows import WorkflowMessage

        self.conn.execute(
            "INSERT INTO m11_audit.workflow_runs (id, tenant_id, name, definition) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING", (run_id, tenant_id, name, Jsonb(dict(definition))))
        self.pending.append(WorkflowMessage(workflow_run_id=run_id, tenant_id=tenant_id, correlation_id=run_id))

    def discard(self) -> None:
        """The transaction rolled back: its runs were never written, so nothing is sent."""
        self.pending.clear()

    def flush(self) -> None:
        """The transaction committed: send each run's message (a second message for a run changes nothing:
        the runner answers a finished run with its outcome). A message SQS refuses is logged and left to the
        relay (workflows.relay), which sends it again once the run has waited: the commit stands, and failing
        the caller's records for it would only replay what they already did."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        from incident_loop.stores.workflow_queue import SqsWorkflowQueue, send_after_commit

        queue = self._queue or SqsWorkflowQueue()
        for message in pending:
            send_after_commit(queue, message)
