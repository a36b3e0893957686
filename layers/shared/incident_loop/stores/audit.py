"""m11_audit in PostgreSQL: workflow runs, their ops, replay runs, the summary view, retention.

PostgresAudit is the AuditStore of incident_loop.workflows.ports on one connection (the container's unless
given); `begin(tenant)` is db.transaction, scoped to the tenant (row-level security) and bounded. JSON is
bound with psycopg's Jsonb adapter, so the SQL never casts a parameter's text to jsonb itself (seed 004's
`:args::jsonb` broke under a binder that read `:jsonb` as a parameter).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.db import get_connection, transaction
from incident_loop.schemas.text import storable, storable_json

Row = dict[str, Any]

_RUN = ("id, tenant_id, name, definition, status, error_code, error_message, created_at, updated_at,"
        " completed_at")
_OP_META = ("op_id, workflow_run_id, op_index, op_type, skill_version, args_hash, result_hash, status, error_code,"
            " error_message, duration_ms, transient, idempotency_key, tenant_id, created_at, completed_at")
_OP = f"{_OP_META}, args, result"
_WHERE_OP = "WHERE tenant_id = %(tenant)s AND workflow_run_id = %(run)s AND op_index = %(index)s"


class PostgresAudit:
    """The audit's statements on one connection; each runs in the transaction `begin` opened."""

    def __init__(self, conn: Connection[Any] | None = None) -> None:
        self.conn = conn or get_connection()

    @contextmanager
    def begin(self, tenant_id: str | None) -> Iterator[PostgresAudit]:
        """One transaction for the tenant: committed when the block ends, rolled back when it raises."""
        with transaction(self.conn, tenant_id=tenant_id):
            yield self

    # ------------------------------------------------------------------------------------ runs

    def create_run(self, run_id: str, tenant_id: str, name: str | None, definition: Mapping[str, Any]) -> bool:
        row = self.conn.execute(
            "INSERT INTO m11_audit.workflow_runs (id, tenant_id, name, definition)"
            " VALUES (%(id)s, %(tenant)s, %(name)s, %(definition)s) ON CONFLICT (id) DO NOTHING RETURNING id",
            {"id": run_id, "tenant": tenant_id, "name": name, "definition": Jsonb(dict(definition))}).fetchone()
        return row is not None

    def same_definition(self, tenant_id: str, run_id: str, definition: Mapping[str, Any]) -> bool:
        # Compared as jsonb, where both sides were parsed alike (1e23 is 1e23 on both; true is not 1).
        row = self.conn.execute(
            "SELECT definition = %(definition)s AS same FROM m11_audit.workflow_runs"
            " WHERE tenant_id = %(tenant)s AND id = %(id)s",
            {"definition": Jsonb(dict(definition)), "tenant": tenant_id, "id": run_id}).fetchone()
        return bool(row and row["same"])

    def run(self, tenant_id: str, run_id: str) -> Row | None:
        return self.conn.execute(
            f"SELECT {_RUN} FROM m11_audit.workflow_runs WHERE tenant_id = %(tenant)s AND id = %(id)s",
            {"tenant": tenant_id, "id": run_id}).fetchone()

    def take_lease(self, tenant_id: str, run_id: str, owner: str, seconds: float) -> bool:
        row = self.conn.execute(
            "UPDATE m11_audit.workflow_runs SET lease_owner = %(owner)s,"
            " lease_until = now() + make_interval(secs => %(secs)s),"
            " status = CASE WHEN status = 'queued' THEN 'running' ELSE status END, updated_at = now()"
            " WHERE tenant_id = %(tenant)s AND id = %(id)s AND status IN ('queued', 'running')"
            " AND (lease_until IS NULL OR lease_until < now() OR lease_owner = %(owner)s) RETURNING id",
            {"owner": owner, "secs": float(seconds), "tenant": tenant_id, "id": run_id}).fetchone()
        return row is not None

    def release_lease(self, tenant_id: str, run_id: str, owner: str) -> None:
        self.conn.execute(
            "UPDATE m11_audit.workflow_runs SET lease_owner = NULL, lease_until = NULL"
            " WHERE tenant_id = %(tenant)s AND id = %(id)s AND lease_owner = %(owner)s",
            {"tenant": tenant_id, "id": run_id, "owner": owner})

    def finish_run(self, tenant_id: str, run_id: str, status: str, error_code: str | None = None,
                   error_message: str | None = None) -> None:
        self.conn.execute(
            "UPDATE m11_audit.workflow_runs SET status = %(status)s, error_code = %(code)s,"
            " error_message = %(message)s, lease_owner = NULL, lease_until = NULL, updated_at = now(),"
            " completed_at = now() WHERE tenant_id = %(tenant)s AND id = %(id)s",
            {"status": status, "code": error_code, "message": error_message, "tenant": tenant_id, "id": run_id})

    # ------------------------------------------------------------------------------------- ops

    def as_stored(self, value: Any) -> Any:
        """`value` as JSONB gives it back (1e+20 comes back 100000000000000000000): what hashes must be of."""
        # What the product records but did not choose (a skill's result, arguments resolved from one) may hold a
        # NUL or a lone surrogate, which JSONB refuses: replaced, or the op could never be recorded.
        row = self.conn.execute("SELECT %(value)s AS value", {"value": Jsonb(storable_json(value))}).fetchone()
        assert row is not None
        return row["value"]

    def ops(self, tenant_id: str, run_id: str) -> list[Row]:
        return self.conn.execute(
            f"SELECT {_OP} FROM m11_audit.ops WHERE tenant_id = %(tenant)s AND workflow_run_id = %(run)s"
            " ORDER BY op_index", {"tenant": tenant_id, "run": run_id}).fetchall()

    def ops_within(self, tenant_id: str, run_id: str, budget: int) -> list[Row]:
        return self.conn.execute(
            f"SELECT {_OP_META}, CASE WHEN inline THEN args END AS args, CASE WHEN inline THEN result END AS result,"
            " NOT inline AS omitted FROM (SELECT *, sum(octet_length(args::text)"
            " + coalesce(octet_length(result::text), 0)) OVER (ORDER BY op_index) <= %(budget)s AS inline"
            " FROM m11_audit.ops WHERE tenant_id = %(tenant)s AND workflow_run_id = %(run)s) o ORDER BY op_index",
            {"tenant": tenant_id, "run": run_id, "budget": budget}).fetchall()

    def op(self, tenant_id: str, run_id: str, op_index: int) -> Row | None:
        return self.conn.execute(f"SELECT {_OP} FROM m11_audit.ops {_WHERE_OP}",
                                 {"tenant": tenant_id, "run": run_id, "index": op_index}).fetchone()

    def claim_op(self, op: Any) -> Row:
        """Insert `op` (a workflows.ports.NewOp) as pending unless its (run, op_index) exists; the stored row.

        The unique (workflow_run_id, op_index) gives every step one row however often it is delivered.
        """
        params = {"op_id": op.op_id, "run": op.workflow_run_id, "index": op.op_index, "type": op.op_type,
                  "version": op.skill_version, "args": Jsonb(op.args), "args_hash": op.args_hash,
                  "transient": op.transient, "key": op.idempotency_key, "tenant": op.tenant_id}
        self.conn.execute(
            "INSERT INTO m11_audit.ops (op_id, workflow_run_id, op_index, op_type, skill_version, args, args_hash,"
            " transient, idempotency_key, tenant_id) VALUES (%(op_id)s, %(run)s, %(index)s, %(type)s, %(version)s,"
            " %(args)s, %(args_hash)s, %(transient)s, %(key)s, %(tenant)s)"
            " ON CONFLICT (workflow_run_id, op_index) DO NOTHING", params)
        row = self.op(op.tenant_id, op.workflow_run_id, op.op_index)
        assert row is not None  # just inserted, or there before
        return row

    def note_error(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str) -> None:
        self.conn.execute(
            f"UPDATE m11_audit.ops SET error_code = %(code)s, error_message = %(message)s {_WHERE_OP}"
            " AND status = 'pending'",
            {"code": code, "message": storable(message), "tenant": tenant_id, "run": run_id, "index": op_index})

    def complete_op(self, tenant_id: str, run_id: str, op_index: int, result: Mapping[str, Any],
                    result_hash: str, duration_ms: int) -> Row:
        return self._finish_op(tenant_id, run_id, op_index, {
            "status": "completed", "result": Jsonb(dict(result)), "result_hash": result_hash, "code": None,
            "message": None, "duration": duration_ms})

    def fail_op(self, tenant_id: str, run_id: str, op_index: int, code: str, message: str,
                duration_ms: int | None) -> Row:
        return self._finish_op(tenant_id, run_id, op_index, {
            "status": "failed", "result": None, "result_hash": None, "code": code, "message": storable(message),
            "duration": duration_ms})

    def _finish_op(self, tenant_id: str, run_id: str, op_index: int, values: dict[str, Any]) -> Row:
        # Only a pending op takes an outcome: a second worker finishing the same op keeps the first outcome.
        params = {**values, "tenant": tenant_id, "run": run_id, "index": op_index}
        self.conn.execute(
            "UPDATE m11_audit.ops SET status = %(status)s, result = %(result)s, result_hash = %(result_hash)s,"
            " error_code = %(code)s, error_message = %(message)s, duration_ms = %(duration)s,"
            f" completed_at = now() {_WHERE_OP} AND status = 'pending'", params)
        row = self.op(tenant_id, run_id, op_index)
        assert row is not None
        return row

    def summary(self, tenant_id: str, run_id: str) -> Row | None:
        return self.conn.execute(
            "SELECT total_ops, completed_ops, failed_ops, first_op_at, last_op_at, total_duration_ms"
            " FROM m11_audit.workflow_summary WHERE tenant_id = %(tenant)s AND workflow_run_id = %(run)s",
            {"tenant": tenant_id, "run": run_id}).fetchone()

    # --------------------------------------------------------------------------------- replays

    def record_replay(self, replay: Any) -> None:
        """Store a finished verification (a workflows.ports.ReplayRecord)."""
        self.conn.execute(
            "INSERT INTO m11_audit.replay_runs (replay_id, workflow_run_id, tenant_id, mode, status, ops_total,"
            " ops_verified, ops_failed, ops_skipped, first_mismatch_op_index, mismatch_diff, error_message,"
            " completed_at) VALUES (%(id)s, %(run)s, %(tenant)s, %(mode)s, %(status)s, %(total)s, %(verified)s,"
            " %(failed)s, %(skipped)s, %(first)s, %(diff)s, %(error)s, now())",
            {"id": replay.replay_id, "run": replay.workflow_run_id, "tenant": replay.tenant_id, "mode": replay.mode,
             "status": replay.status, "total": replay.ops_total, "verified": replay.ops_verified,
             "failed": replay.ops_failed, "skipped": replay.ops_skipped, "first": replay.first_mismatch_op_index,
             "diff": None if replay.mismatch_diff is None else Jsonb(replay.mismatch_diff),
             "error": replay.error_message})


def purge_batch(conn: Connection[Any], max_age_days: int, batch_size: int) -> Row:
    """One retention batch over every tenant (the owner's m11_audit.purge_audit, migration 0010).

    Returns {"ops_deleted", "replays_deleted", "runs_deleted"}, each at most batch_size.
    """
    row = conn.execute("SELECT ops_deleted, replays_deleted, runs_deleted FROM m11_audit.purge_audit(%(days)s, %(n)s)",
                       {"days": max_age_days, "n": batch_size}).fetchone()
    assert row is not None
    return dict(row)


def claim_stale_runs(conn: Connection[Any], min_age_s: int, max_requeues: int, give_up_s: int,
                     max_runs: int) -> list[Row]:
    """Queued runs of every tenant untouched for min_age_s (the owner's m11_audit.claim_stale_runs, migration
    0013): each {"workflow_run_id", "tenant_id", "requeues", "abandoned"}. A claimed run (abandoned False) has
    its requeues counted; an abandoned one (requeued max_requeues times already, and created more than
    give_up_s ago) is failed as never_started."""
    return conn.execute(
        "SELECT workflow_run_id, tenant_id, requeues, abandoned"
        " FROM m11_audit.claim_stale_runs(%(age)s, %(max)s, %(give_up)s, %(n)s)",
        {"age": min_age_s, "max": max_requeues, "give_up": give_up_s, "n": max_runs}).fetchall()


def release_claims(conn: Connection[Any], run_ids: list[str], min_age_s: int) -> int:
    """Give back claims claim_stale_runs made that the relay did not send (migration 0015): their requeue is
    not counted, and they are stale again for the next relay. The number of runs released (still queued)."""
    row = conn.execute("SELECT m11_audit.release_claims(%(ids)s, %(age)s) AS n",
                       {"ids": run_ids, "age": min_age_s}).fetchone()
    return int(row["n"]) if row else 0
