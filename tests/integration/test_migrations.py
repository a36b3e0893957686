"""The migration runner against a real, empty PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from incident_loop import db, migrate, settings
from incident_loop_dev.local.events import FakeContext
from incident_loop_dev.local.runner import handler_module

ROOT = Path(__file__).resolve().parents[2]

LOOP_TABLES = {
    "incidents", "failure_patterns", "recovery_candidates", "policy_rules", "routing_adjustments",
    "human_checkpoints", "loop_events", "loop_traces", "prevention_records", "failure_matches",
}
SEED_002_INDEXES = {
    "idx_fm_run_id", "idx_fm_tenant_id", "idx_fm_error_code", "idx_fm_catalog_entry_id", "idx_fm_created_at",
    "idx_fm_category", "idx_fm_severity", "idx_fm_recovery_mode", "idx_fm_tenant_error", "idx_fm_tenant_time",
    "idx_fm_recovery_pending", "idx_fm_recent_misses",
}


def test_chain_has_no_gaps() -> None:
    versions = [m.version for m in migrate.discover()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 2


def test_gap_in_chain_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="gap"):
        migrate.discover(tmp_path)


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_a.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="NNNN_name.sql"):
        migrate.discover(tmp_path)


def test_applies_twice_cleanly_on_an_empty_database(empty_db_url: str) -> None:
    first = migrate.apply(empty_db_url)
    second = migrate.apply(empty_db_url)
    assert first == [m.filename for m in migrate.discover()]
    assert second == []
    with psycopg.connect(empty_db_url) as conn:
        recorded = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    assert [(v, c) for v, c in recorded] == [(m.version, m.checksum) for m in migrate.discover()]


def test_every_table_and_seed_index_exists(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'failure_matches'"
        ).fetchall())
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'failure_matches'"
        ).fetchone()
        pattern_type = conn.execute(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'failure_patterns' AND column_name = 'pattern_type'"
        ).fetchone()
    assert LOOP_TABLES <= tables
    assert SEED_002_INDEXES <= set(indexes)
    assert "WHERE (recovery_succeeded = false)" in indexes["idx_fm_recovery_pending"]
    assert "WHERE (catalog_entry_id IS NULL)" in indexes["idx_fm_recent_misses"]
    assert columns == (23,)
    assert pattern_type == ("NO",)


def test_edited_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    for path in migrate.default_dir().glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    migrate.apply(empty_db_url, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(migrate.MigrationError, match=f"{first.name} was edited after it was applied"):
        migrate.apply(empty_db_url, tmp_path)


def test_concurrent_runners_apply_each_migration_once(empty_db_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate.apply(empty_db_url))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrate.discover())]


def test_cli_migrate_twice(empty_db_url: str) -> None:
    cmd = [sys.executable, "-m", "incident_loop_dev.cli", "migrate", "--database-url", empty_db_url]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert f"applied {len(migrate.discover())} migration(s)" in first.stdout
    assert "applied 0 migration(s), up to date" in second.stdout


def test_stored_candidate_keys_are_bounded_as_the_matcher_bounds_them(empty_db_url: str, tmp_path: Path) -> None:
    """0014 keys a pattern stored with a long first word as candidate_key() keys it now, and leaves the rest."""
    from incident_loop.grouping.matcher import candidate_key

    for migration in migrate.discover():
        if migration.version < 14:
            (tmp_path / migration.filename).write_text(migration.sql)
    migrate.apply(empty_db_url, tmp_path)
    word = "x" * 300
    rows = {"long": f"{word} failed", "short": "disk failed", "wild": "<*> failed"}
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for pid, template in rows.items():
            conn.execute(
                "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template,"
                " candidate_key, category, first_incident_id) VALUES (%s, 't', 'x', 'E', %s, %s, %s, 'c', 'i')",
                (pid, pid, template, f"2:{template.split(' ')[0]}"))
        migrate.apply(empty_db_url)
        keys = dict(conn.execute("SELECT id, candidate_key FROM failure_patterns").fetchall())
    assert keys == {pid: candidate_key(template.split(" ")) for pid, template in rows.items()}
    assert keys["long"] == "2:" + "x" * 64


def test_merge_chains_made_before_0022_are_flattened_to_the_pattern_their_incidents_meet(
        empty_db_url: str, tmp_path: Path) -> None:
    """a -> b -> c (c live) and d -> c: after 0024 every absorbed pattern names c, as ABSORB_SQL keeps them."""
    for migration in migrate.discover():
        if migration.version < 24:
            (tmp_path / migration.filename).write_text(migration.sql)
    migrate.apply(empty_db_url, tmp_path)
    merged = {"a": "b", "b": "c", "c": None, "d": "c", "e": None}
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for pid, into in merged.items():
            conn.execute(
                "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template,"
                " candidate_key, category, first_incident_id, merged_into) VALUES (%s, 't', 'x', 'E', %s, 'm', '1:m',"
                " 'c', 'i', %s)", (pid, pid, into))
        migrate.apply(empty_db_url)
        found = dict(conn.execute("SELECT id, merged_into FROM failure_patterns").fetchall())
    assert found == {"a": "c", "b": "c", "c": None, "d": "c", "e": None}


def test_policies_activated_before_0025_keep_the_graduation_gate_they_earned(empty_db_url: str, tmp_path: Path) -> None:
    """0025 writes first_activated_at from activated_at, or, for a policy demoted since, from its first prevention (a
    prevention proves the policy was active); a policy never activated stays without one."""
    for migration in migrate.discover():
        if migration.version < 25:
            (tmp_path / migration.filename).write_text(migration.sql)
    migrate.apply(empty_db_url, tmp_path)
    activated = {"active": "2026-01-02T00:00:00+00:00", "demoted": None, "shadow": None}
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET session_replication_role = replica")  # rows without the rows they reference
        for pid, at in activated.items():
            conn.execute(
                "INSERT INTO policy_rules (id, tenant_id, name, description, rule_type, conditions, actions,"
                " source_type, source_pattern_id, source_recovery_id, generation_confidence, mode, activated_at)"
                " VALUES (%s, 't', 'n', 'd', 'r', '{}', '[]', 'recovery', %s, 'rec', 0.9, 'shadow', %s)",
                (pid, f"pat-{pid}", at))
        for n, at in enumerate(("2026-01-05T00:00:00+00:00", "2026-01-03T00:00:00+00:00")):
            conn.execute(
                "INSERT INTO prevention_records (id, tenant_id, policy_id, pattern_id, original_incident_id,"
                " blocked_incident_id, signature_hash, created_at) VALUES (%s, 't', 'demoted', 'pat-demoted', 'i0', %s,"
                " 'h', %s)", (f"prev-{n}", f"i{n + 1}", at))
        conn.execute("SET session_replication_role = DEFAULT")
        migrate.apply(empty_db_url)
        found = {pid: at and at.isoformat() for pid, at in
                 conn.execute("SELECT id, first_activated_at FROM policy_rules").fetchall()}
    assert found == {"active": "2026-01-02T00:00:00+00:00", "demoted": "2026-01-03T00:00:00+00:00", "shadow": None}


def _with_one_more(tmp_path: Path, sql: str) -> Path:
    """The shipped migrations and one more (the next version)."""
    tmp_path.mkdir(exist_ok=True)
    shipped = sorted((ROOT / "migrations").glob("*.sql"))
    for path in shipped:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / f"{len(shipped) + 1:04d}_needs_an_exclusive_lock.sql").write_text(sql)
    return tmp_path


def _index_valid(url: str, name: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                           " WHERE c.relname = %s", (name,)).fetchone()
    return None if row is None else bool(row[0])


def _recorded(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


CONCURRENT_INDEX = (f"{migrate.NO_TRANSACTION}\n-- an index on a table that is written to, built without blocking"
                    " its writers\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name}"
                    " ON failure_matches (run_id);\n")


def test_a_no_transaction_migration_builds_an_index_concurrently_and_is_recorded_once(
        empty_db_url: str, tmp_path: Path) -> None:
    """CREATE INDEX CONCURRENTLY cannot run in a transaction block: marked, it runs by itself, then is recorded."""
    migrate.apply(empty_db_url)
    directory = _with_one_more(tmp_path, CONCURRENT_INDEX.format(name="idx_fm_run_once"))
    last = sorted(p.name for p in directory.glob("*.sql"))[-1]
    assert not migrate.discover(directory)[-1].transactional and migrate.discover(directory)[0].transactional
    assert migrate.apply(empty_db_url, directory, _Clock(30.0)) == [last]
    assert _index_valid(empty_db_url, "idx_fm_run_once") is True
    assert _recorded(empty_db_url)[-1] == len(migrate.discover(directory))
    assert migrate.apply(empty_db_url, directory) == []


def test_with_a_deadline_a_concurrent_build_waits_for_the_tables_writers_as_long_as_time_is_left(
        empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent build waits for every transaction that wrote to its table (PostgreSQL counts that as a lock
    wait). Held to LOCK_TIMEOUT_MS, a write lasting longer failed the build after its work, INVALID, to start again
    from nothing; it may wait for the time the run has left."""
    migrate.apply(empty_db_url)
    directory = _with_one_more(tmp_path, CONCURRENT_INDEX.format(name="idx_fm_run_once"))
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_MS", 200)
    with psycopg.connect(empty_db_url) as writer:
        writer.execute("INSERT INTO failure_matches (id, run_id, tenant_id, error_code)"
                       " VALUES (gen_random_uuid(), 'run-1', 'tenant-a', 'E1')")  # open, for a second
        threading.Timer(1.0, writer.commit).start()
        started = time.monotonic()
        applied = migrate.apply(empty_db_url, directory, _Clock(30.0))
        waited = time.monotonic() - started
    assert applied == [sorted(p.name for p in directory.glob("*.sql"))[-1]] and waited >= 0.8
    assert _index_valid(empty_db_url, "idx_fm_run_once") is True


@pytest.mark.parametrize("spelled", ["idx_fm_run_once", "Idx_FM_Run_Once", '"Idx Run Once"'])
def test_a_concurrent_build_that_failed_is_dropped_and_built_again_by_the_next_run(
        empty_db_url: str, tmp_path: Path, spelled: str) -> None:
    """A unique index over duplicate rows fails half-built: PostgreSQL keeps it INVALID (IF NOT EXISTS would then
    skip it for ever). The run fails unrecorded; once the rows are fixed, the next run drops it and builds it,
    however the file spells its name (unquoted names fold to lower case, quoted ones are kept as written)."""
    migrate.apply(empty_db_url)
    directory = _with_one_more(tmp_path, CONCURRENT_INDEX.format(name=spelled))
    stored = spelled[1:-1] if spelled.startswith('"') else spelled.lower()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:  # the owner: row-level security does not apply
        for _ in range(2):
            conn.execute("INSERT INTO failure_matches (id, run_id, tenant_id, error_code)"
                         " VALUES (gen_random_uuid(), 'run-1', 'tenant-a', 'E1')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        migrate.apply(empty_db_url, directory)
    assert _index_valid(empty_db_url, stored) is False
    assert _recorded(empty_db_url)[-1] == len(migrate.discover(directory)) - 1
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM failure_matches WHERE id = (SELECT id FROM failure_matches LIMIT 1)")
    last = sorted(p.name for p in directory.glob("*.sql"))[-1]
    assert migrate.apply(empty_db_url, directory) == [last]
    assert _index_valid(empty_db_url, stored) is True


def test_a_no_transaction_migration_of_two_statements_is_refused_with_the_rule(
        empty_db_url: str, tmp_path: Path) -> None:
    migrate.apply(empty_db_url)
    directory = _with_one_more(tmp_path, f"{migrate.NO_TRANSACTION}\n"
                               "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON failure_matches (run_id);\n"
                               "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_b ON failure_matches (tenant_id);\n")
    with pytest.raises(migrate.MigrationError, match="must hold one statement"):
        migrate.apply(empty_db_url, directory)
    assert _index_valid(empty_db_url, "idx_a") is None
    plain = _with_one_more(tmp_path / "plain", f"{migrate.NO_TRANSACTION}\nCREATE INDEX idx_c ON failure_matches"
                           " (run_id);\nCREATE INDEX idx_d ON failure_matches (tenant_id);\n")
    with pytest.raises(migrate.MigrationError, match="must hold one statement"):  # refused even where PG would not
        migrate.apply(empty_db_url, plain)
    assert _index_valid(empty_db_url, "idx_c") is None
    assert _recorded(empty_db_url)[-1] < len(migrate.discover(directory))


class _Clock:
    """A deadline `seconds` from now, as a Lambda context counts it down."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def __call__(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def test_with_a_deadline_a_migration_behind_a_busy_table_gives_up_in_time_and_blocks_nobody_for_long(
        empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The custom resource applied migrations unbounded: an ALTER TABLE behind any open transaction on its table
    waited for ever, queueing every later reader and writer of the table behind it, and the function was killed
    at its timeout without answering CloudFormation. With the function's clock, a lock is waited for a bounded
    time, the writers behind it get through, and MigrationError comes while there is time to answer."""
    migrate.apply(empty_db_url)
    directory = _with_one_more(tmp_path, "ALTER TABLE failure_matches ADD COLUMN reviewed boolean;")
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_MS", 300)
    monkeypatch.setattr(migrate, "ANSWER_RESERVE_MS", 1_000)
    monkeypatch.setattr(migrate, "RETRY_PAUSE_S", 0.2)
    with psycopg.connect(empty_db_url) as reader, psycopg.connect(empty_db_url, autocommit=True) as writer:
        reader.execute("SELECT count(*) FROM failure_matches")  # an open transaction that read the table
        clock = _Clock(3.0)
        failed: list[BaseException] = []
        runner = threading.Thread(target=lambda: _capture(failed, migrate.apply, empty_db_url, directory, clock))
        runner.start()
        time.sleep(0.5)
        started = time.monotonic()
        writer.execute("SELECT count(*) FROM failure_matches")  # behind the migration's lock request, briefly
        waited = time.monotonic() - started
        runner.join(timeout=10)
        assert not runner.is_alive() and clock() >= 500  # gave up with time left to answer
    assert len(failed) == 1 and isinstance(failed[0], migrate.MigrationError)
    assert "no time left" in str(failed[0]) and waited < 1.0
    last = sorted(p.name for p in directory.glob("*.sql"))[-1]
    assert migrate.apply(empty_db_url, directory, _Clock(30.0)) == [last]  # the table idle again: applied


class _CloudFormation(BaseHTTPRequestHandler):
    """The pre-signed URL a custom resource answers: keeps every answer."""

    answers: list[dict[str, Any]] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        type(self).answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_custom_resource_answers_cloudformation_before_its_timeout_when_a_table_stays_busy(
        empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.apply(empty_db_url)
    app = handler_module(ROOT / "functions" / "migrate", "app.lambda_handler", "migrate_deadline")
    monkeypatch.setattr(app, "MIGRATIONS", _with_one_more(tmp_path, "ALTER TABLE failure_matches ADD COLUMN x int;"))
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    settings.get_settings.cache_clear()
    db.reset_connection()
    monkeypatch.setattr(migrate, "ANSWER_RESERVE_MS", 2_000)
    _CloudFormation.answers = []
    server = HTTPServer(("127.0.0.1", 0), _CloudFormation)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    event = {"RequestType": "Update", "ResponseURL": f"http://127.0.0.1:{server.server_port}/cfn",
             "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1", "RequestId": "r-1",
             "LogicalResourceId": "Migrations", "PhysicalResourceId": "incident-loop-migrations",
             "ResourceType": "Custom::Migrations", "ResourceProperties": {}}
    reader = psycopg.connect(empty_db_url)
    reader.execute("SELECT count(*) FROM failure_matches")  # open, and it stays open past the budget
    worker = threading.Thread(target=app.lambda_handler,
                              args=(event, FakeContext(function_name="MigrateFunction", timeout_s=8.0)), daemon=True)
    try:
        worker.start()
        worker.join(timeout=8.0)  # the function's timeout: Lambda ends it here, answered or not
        answers = list(_CloudFormation.answers)
    finally:
        reader.close()  # an unbounded migration gets its lock now and ends
        worker.join(timeout=30)
        server.shutdown()
        settings.get_settings.cache_clear()
        db.reset_connection()
    assert len(answers) == 1, "no answer to CloudFormation within the function's timeout"
    assert answers[0]["Status"] == "FAILED" and "no time left" in answers[0]["Reason"]


def _capture(failed: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test reads it
        failed.append(exc)
