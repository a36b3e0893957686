"""m11_audit in PostgreSQL: row-level security like 0009, and retention in bounded batches (as the function role)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from incident_loop import migrate
from incident_loop.db import transaction
from incident_loop.stores.audit import purge_batch
from incident_loop.workflows.retention import purge_audit
from incident_loop_dev.local.services import function_role_url

AUDIT_TABLES = ("ops", "replay_runs", "workflow_runs")


@pytest.fixture
def fn_conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the functions' role (row-level security applies)."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        yield conn


def _run(admin: Any, tenant: str, age_days: int, ops: int, replays: int = 1, status: str = "completed") -> str:
    """A run with its ops and replays, all `age_days` old (written as the owner); finished unless `status`
    says it is still running."""
    run_id = f"wf_{uuid.uuid4().hex}"
    age = {"age": age_days}
    admin.execute("INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, status, created_at, updated_at,"
                  " completed_at) VALUES (%(id)s, %(t)s, %(d)s, %(status)s, now() - make_interval(days => %(age)s),"
                  " now() - make_interval(days => %(age)s),"
                  " CASE WHEN %(status)s = 'running' THEN NULL ELSE now() - make_interval(days => %(age)s) END)",
                  {"id": run_id, "t": tenant, "d": Jsonb({"steps": []}), "status": status, **age})
    for index in range(ops):
        admin.execute("INSERT INTO m11_audit.ops (op_id, workflow_run_id, op_index, op_type, args, args_hash, status,"
                      " tenant_id, created_at) VALUES (%(op)s, %(id)s, %(i)s, 'kv_store', %(a)s, 'h', 'completed',"
                      " %(t)s, now() - make_interval(days => %(age)s))",
                      {"op": f"{run_id}.{index}", "id": run_id, "i": index, "a": Jsonb({}), "t": tenant, **age})
    for _ in range(replays):
        admin.execute("INSERT INTO m11_audit.replay_runs (replay_id, workflow_run_id, tenant_id, mode, status,"
                      " started_at) VALUES (%(r)s, %(id)s, %(t)s, 'recorded_outputs', 'verified',"
                      " now() - make_interval(days => %(age)s))",
                      {"r": f"rp_{uuid.uuid4().hex}", "id": run_id, "t": tenant, **age})
    return run_id


def _left(admin: Any, run_ids: list[str]) -> dict[str, int]:
    counts = {}
    for table in AUDIT_TABLES:
        column = "id" if table == "workflow_runs" else "workflow_run_id"
        row = admin.execute(f"SELECT count(*) AS n FROM m11_audit.{table} WHERE {column} = ANY(%(ids)s)",
                            {"ids": run_ids}).fetchone()
        counts[table] = row["n"]
    return counts


def test_every_audit_table_has_row_level_security_and_a_tenant_policy(admin_conn: Any) -> None:
    rows = admin_conn.execute(
        "SELECT c.relname, c.relrowsecurity, (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'm11_audit'"
        " AND p.tablename = c.relname AND p.qual LIKE '%%app.tenant_id%%' AND p.with_check LIKE '%%app.tenant_id%%')"
        " AS policies FROM pg_class c WHERE c.relnamespace = 'm11_audit'::regnamespace AND c.relkind = 'r'"
        " ORDER BY c.relname").fetchall()
    assert [(r["relname"], r["relrowsecurity"], r["policies"]) for r in rows] == [
        ("ops", True, 1), ("replay_runs", True, 1), ("workflow_runs", True, 1)]


def test_another_tenant_sees_none_of_the_audit_and_the_function_role_cannot_delete_it(
        admin_conn: Any, fn_conn: Any) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    run_id = _run(admin_conn, tenant, age_days=0, ops=2)
    fn_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (f"tenant-{uuid.uuid4().hex[:8]}",))
    for table in (*AUDIT_TABLES, "workflow_summary"):
        assert fn_conn.execute(f"SELECT count(*) AS n FROM m11_audit.{table}").fetchone()["n"] == 0, table
    fn_conn.rollback()
    fn_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
    [summary] = fn_conn.execute("SELECT total_ops FROM m11_audit.workflow_summary WHERE workflow_run_id = %(id)s",
                                {"id": run_id}).fetchall()
    assert summary["total_ops"] == 2
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        fn_conn.execute("DELETE FROM m11_audit.ops WHERE workflow_run_id = %(id)s", {"id": run_id})


def test_one_retention_batch_takes_at_most_its_size_of_whole_runs(admin_conn: Any, fn_conn: Any) -> None:
    """Whole runs, each with every op and replay: a batch that stopped part-way through a run's ops left the run
    with some of them, which a replay in between reported as tampering."""
    old = [_run(admin_conn, f"tenant-{uuid.uuid4().hex[:8]}", age_days=400, ops=4) for _ in range(4)]

    with transaction(fn_conn, tenant_id=None):
        counts = purge_batch(fn_conn, 365, 3)

    assert counts == {"ops_deleted": 12, "replays_deleted": 3 + 1, "runs_deleted": 3}
    left = [_left(admin_conn, [run]) for run in old]
    assert sorted(left, key=lambda c: c["workflow_runs"]) == [{"ops": 0, "replay_runs": 0, "workflow_runs": 0}] * 3 + [
        {"ops": 4, "replay_runs": 0, "workflow_runs": 1}]  # the fourth run's own old replay went by its age


def test_retention_deletes_every_tenants_old_audit_in_batches_and_keeps_the_recent(
        admin_conn: Any, fn_conn: Any) -> None:
    old = [_run(admin_conn, f"tenant-{uuid.uuid4().hex[:8]}", age_days=120, ops=5) for _ in range(2)]
    recent = [_run(admin_conn, f"tenant-{uuid.uuid4().hex[:8]}", age_days=10, ops=3)]

    summary = purge_audit(90, batch_size=4, conn=fn_conn)

    assert _left(admin_conn, old) == {"ops": 0, "replay_runs": 0, "workflow_runs": 0}
    assert _left(admin_conn, recent) == {"ops": 3, "replay_runs": 1, "workflow_runs": 1}
    assert summary["ops_deleted"] >= 10 and summary["runs_deleted"] >= 2 and summary["complete"] is True


def test_a_retention_age_below_a_day_deletes_nothing(admin_conn: Any, fn_conn: Any) -> None:
    run_id = _run(admin_conn, f"tenant-{uuid.uuid4().hex[:8]}", age_days=2, ops=1)

    with transaction(fn_conn, tenant_id=None):
        counts = purge_batch(fn_conn, 0, 100)

    assert counts == {"ops_deleted": 0, "replays_deleted": 0, "runs_deleted": 0}
    assert _left(admin_conn, [run_id])["ops"] == 1


def test_a_run_still_running_keeps_its_ops_while_a_message_of_it_can_come_back(admin_conn: Any, fn_conn: Any) -> None:
    """Started 400 days ago but touched 3 days ago (a message redriven late may resume it): kept, ops and all.
    Untouched for 400 days (SQS keeps a message 14 days at most): over, and purged whole; it was kept forever."""
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    running = _run(admin_conn, tenant, age_days=400, ops=3, replays=0, status="running")
    admin_conn.execute("UPDATE m11_audit.workflow_runs SET updated_at = now() - interval '3 days' WHERE id = %s",
                       (running,))
    abandoned = _run(admin_conn, tenant, age_days=400, ops=3, replays=0, status="running")
    finished = _run(admin_conn, tenant, age_days=400, ops=3, replays=0)
    for _ in range(20):
        if fn_conn.execute("SELECT * FROM m11_audit.purge_audit(1, 1000)").fetchone()["runs_deleted"] == 0:
            break
    fn_conn.commit()
    assert _left(admin_conn, [running]) == {"workflow_runs": 1, "ops": 3, "replay_runs": 0}
    assert _left(admin_conn, [abandoned]) == {"workflow_runs": 0, "ops": 0, "replay_runs": 0}
    assert _left(admin_conn, [finished]) == {"workflow_runs": 0, "ops": 0, "replay_runs": 0}


def test_a_run_replayed_since_the_cutoff_keeps_its_ops_with_its_row(admin_conn: Any, fn_conn: Any) -> None:
    """Finished 100 days ago, replayed yesterday: its ops went and its row stayed, and the next replay reported
    a CRITICAL mismatch where nothing was tampered with. Now the run, its ops and replays go together."""
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    replayed = _run(admin_conn, tenant, age_days=100, ops=2, replays=1)
    admin_conn.execute("INSERT INTO m11_audit.replay_runs (replay_id, workflow_run_id, tenant_id, mode, status,"
                       " started_at) VALUES (%s, %s, %s, 'recorded_outputs', 'verified', now() - interval '1 day')",
                       (f"rp_{uuid.uuid4().hex}", replayed, tenant))
    for _ in range(5):
        fn_conn.execute("SELECT * FROM m11_audit.purge_audit(90, 1000)")
    fn_conn.commit()
    assert _left(admin_conn, [replayed]) == {"workflow_runs": 1, "ops": 2, "replay_runs": 1}  # the old replay went


def test_the_functions_that_span_every_tenant_refuse_a_caller_scoped_to_one(fn_conn: Any) -> None:
    """Code serving one tenant has no business with every tenant's runs: called from tenant A's scope, the
    relay's claim failed tenant B's queued runs, and its release changed B's run by id."""
    fn_conn.execute("SELECT set_config('app.tenant_id', 'tenant-a', false)")
    for call in ("m11_audit.claim_stale_runs(1, 0, 1, 10000)", "m11_audit.release_claims(ARRAY['wf_x'], 600)",
                 "m11_audit.purge_audit(90, 10)", "purge_failure_matches(90, 10)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no tenant scope"):
            fn_conn.execute(f"SELECT * FROM {call}")
        fn_conn.rollback()
        fn_conn.execute("SELECT set_config('app.tenant_id', 'tenant-a', false)")
    fn_conn.execute("SELECT set_config('app.tenant_id', '', false)")


def test_retention_runs_nothing_of_the_callers_own_as_the_owner(fn_conn: Any) -> None:
    """A definer function that used a temp table by name used the caller's, if it had one: a trigger on it then
    ran as the owner (a way around row-level security). Retention uses none."""
    fn_conn.execute("CREATE TEMP TABLE purge_runs (id text PRIMARY KEY)")
    fn_conn.execute("CREATE FUNCTION pg_temp.planted() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'ran as %', current_user; END $$")
    fn_conn.execute("CREATE TRIGGER planted BEFORE INSERT OR TRUNCATE ON purge_runs"
                    " EXECUTE FUNCTION pg_temp.planted()")
    with transaction(fn_conn, tenant_id=None):
        counts = purge_batch(fn_conn, 365, 10)
    assert set(counts) == {"ops_deleted", "replays_deleted", "runs_deleted"}
    fn_conn.rollback()


def test_a_retention_batch_reads_the_runs_it_deletes_not_the_whole_table(create_database: Any) -> None:
    """purge_audit picks runs by when they finished or were last touched: with no index on either, every batch
    read the whole table and sorted every expired run (2 M runs: 1.2 s a batch; a few million more and it outran
    the 5 s statement timeout, and retention stopped). A database of its own: the counts are the table's."""
    own_admin_url = str(create_database())
    migrate.apply(own_admin_url)
    own_fn_url = function_role_url(own_admin_url)
    total, expired = 60_000, 50
    prefix = f"wf_{uuid.uuid4().hex[:8]}_"
    with psycopg.connect(own_admin_url, autocommit=True) as admin:
        # 60 000 runs finished in the last 80 days, 50 finished 100+ days ago (a night's worth of expiry).
        admin.execute(
            "INSERT INTO m11_audit.workflow_runs (id, tenant_id, definition, status, created_at, updated_at,"
            " completed_at) SELECT %(p)s || g, 't' || (g %% 20), '{\"steps\": []}', 'completed', t, t, t"
            " FROM generate_series(1, %(n)s) g,"
            " LATERAL (SELECT now() - make_interval(days => CASE WHEN g <= %(old)s THEN 100 ELSE (g %% 80) END,"
            "                                      secs => g %% 3600) AS t) x",
            {"p": prefix, "n": total, "old": expired})
        admin.execute("VACUUM ANALYZE m11_audit.workflow_runs")

    with psycopg.connect(own_fn_url, row_factory=dict_row) as conn:
        with transaction(conn, tenant_id=None):
            counts = purge_batch(conn, 90, 5000)
            stats = conn.execute(
                "SELECT seq_scan, seq_tup_read, idx_scan, idx_tup_fetch FROM pg_stat_xact_user_tables"
                " WHERE schemaname = 'm11_audit' AND relname = 'workflow_runs'").fetchone()

    assert counts["runs_deleted"] == expired
    assert stats is not None
    assert stats["seq_tup_read"] < 10 * expired, (
        f"one batch deleting {expired} runs read {stats['seq_tup_read']} of {total} rows sequentially: {stats}")
