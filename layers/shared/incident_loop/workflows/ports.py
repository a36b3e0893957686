"""What the workflows need from below, as interfaces: the audit (PostgreSQL), the queue (SQS), the skills.

PostgreSQL implements AuditStore in incident_loop.stores.audit, SQS the WorkflowQueue in
incident_loop.stores.workflow_queue, the skill registry SkillSource; the unit tests pass in-memory fakes.
Every method that reads or writes a tenant's rows takes the tenant, and `begin(tenant)` scopes the
transaction to it (row-level security), so a wrong tenant finds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from incident_loop.schemas.workflows import WorkflowMessage
    from incident_loop.skills.base import Skill

Row = dict[str, Any]


@dataclass(frozen=True)
class NewOp:
    """An op about to run: what it is asked, recorded (pending) before the skill is called."""

    op_id: str
    workflow_run_id: str
    op_index: int
    op_type: str
    skill_version: str | None
    args: Any
    args_hash: str
    transient: bool
    idempotency_key: str
    tenant_id: str


@dataclass(frozen=True)
class ReplayRecord:
    """One replay verification, as m11_audit.replay_runs keeps it."""

    replay_id: str
    workflow_run_id: str
    tenant_id: str
    mode: str
    status: str
    ops_total: int
    ops_verified: int
    ops_failed: int
    ops_skipped: int
    first_mismatch_op_index: int | None
    mismatch_diff: Any
    error_message: str | None


class AuditStore(Protocol):
    """m11_audit: runs (definition, status, lease), their ops, replays. Each method runs in the open transaction."""

    def begin(self, tenant_id: str | None) -> AbstractContextManager[AuditStore]:
        """One transaction scoped to the tenant: committed when the block ends, rolled back when it raises."""
        ...

    def create_run(self, run_id: str, tenant_id: str, name: str | None, definition: Mapping[str, Any]) -> bool:
        """Store a queued run; False (and nothing changed) when a run with this id exists already."""
        ...

    def same_definition(self, tenant_id: str, run_id: str, definition: Mapping[str, Any]) -> bool:
        """Whether the tenant's run has this definition (as stored JSON compares it)."""
        ...

    def run(self, tenant_id: str, run_id: str) -> Row | None:
        """The run (id, name, definition, status, error_code, error_message, times), or None."""
        ...

    def take_lease(self, tenant_id: str, run_id: str, owner: str, seconds: float) -> bool:
        """Hold (or extend) the run for `owner` unless another owner's lease is still running; marks it running."""
        ...

    def release_lease(self, tenant_id: str, run_id: str, owner: str) -> None: ...

    def finish_run(self, tenant_id: str, run_id: str, status: str, error_code: str | None = None,
                   error_message: str | None = None) -> None:
        """Set the run's final status (completed or failed) and release its lease."""
        ...

    def ops(self, tenant_id: str, run_id: str) -> list[Row]:
        """The run's ops, by op_index."""
        ...

    def ops_within(self, tenant_id: str, run_id: str, budget: int) -> list[Row]:
        """ops(), with each op's args and result only while their stored size (as JSON text), summed in op_index
        order, stays within `budget` bytes; after that None, and `omitted` true. What is not shown is not sent from the
        database (it measures every op's, converting them to text there)."""
        ...

    def op(self, tenant_id: str, run_id: str, op_index: int) -> Row | None:
        """One op of the run, whole; None when there is none."""
        ...

    def as_stored(self, value: Any) -> Any:
        """A JSON value as the store gives it back (numbers normalised): recorded hashes are of this form."""
        ...

    def claim_op(self, op: NewOp) -> Row:
        """Insert the op as pending unless (run, op_index) exists; the stored row either way."""
        ...

    def note_error(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str) -> None:
        """A retryable failure: noted on the pending op, which stays pending for the retry."""
        ...

    def complete_op(self, tenant_id: str, run_id: str, op_index: int, result: Mapping[str, Any],
                    result_hash: str, duration_ms: int) -> Row: ...

    def fail_op(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str,
                duration_ms: int | None) -> Row: ...

    def summary(self, tenant_id: str, run_id: str) -> Row | None:
        """m11_audit.workflow_summary's row for the run (None before its first op)."""
        ...

    def record_replay(self, replay: ReplayRecord) -> None: ...


class WorkflowQueue(Protocol):
    """Where runs are handed to the runner (the workflow queue)."""

    def send(self, message: WorkflowMessage) -> None: ...


class SkillSource(Protocol):
    """The skill registry: incident_loop.skills.registry, or a fake."""

    def get(self, name: str) -> Skill: ...

    def names(self) -> Sequence[str]: ...
