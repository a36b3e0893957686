"""The migration runner against a real, empty PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from incident_loop import migrate

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
