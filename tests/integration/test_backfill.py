"""backfill-provenance against a real PostgreSQL: dedupe, invalid records with file and line, verify, dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from incident_loop_dev import backfill
from incident_loop_dev.bench.backfill import generate


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _count(url: str, tenant: str) -> int:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        row = conn.execute("SELECT count(*) FROM costsim_provenance WHERE tenant_id = %s", (tenant,)).fetchone()
    return int(row[0]) if row else 0


def _records(n: int, tenant: str, offset: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, record in enumerate(generate(n + offset)):
        if i >= offset:
            record["tenant_id"] = tenant
            # make the plan unique to this test's tenant so runs never collide on the input hash
            record["plan"]["steps"][0]["skill"] = f"{tenant}-{i}"
            out.append(record)
    return out


def test_backfill_dedupes_by_input_hash_and_reports_invalid_lines(db_url: str, tenant: str, tmp_path: Path) -> None:
    good = _records(30, tenant)
    path = _jsonl(tmp_path / "a.jsonl", [*good[:20], good[0], "{not json", {"tenant_id": tenant}, *good[20:]])
    summary = backfill.run([path], db_url, batch_size=7, progress=False)
    assert (summary.read, summary.inserted, summary.duplicates) == (33, 30, 1)
    assert [line.split(": ")[0] for line in summary.invalid] == [f"{path}:22", f"{path}:23"]
    again = backfill.run([path], db_url, batch_size=7, progress=False)
    assert (again.inserted, again.duplicates) == (0, 31)
    assert _count(db_url, tenant) == 30


def test_the_same_plan_of_two_tenants_is_stored_once_for_each(db_url: str, tenant: str, tmp_path: Path) -> None:
    other = f"{tenant}-b"
    mine = _records(4, tenant)
    theirs = [{**record, "tenant_id": other} for record in mine]  # the very same plans and input hashes
    path = _jsonl(tmp_path / "two.jsonl", [*mine, *theirs])
    summary = backfill.run([path], db_url, batch_size=5, progress=False)
    assert (summary.inserted, summary.duplicates) == (8, 0)
    assert (_count(db_url, tenant), _count(db_url, other)) == (4, 4)
    verified = backfill.run([path], db_url, verify=True, progress=False)
    assert (verified.verified, verified.missing, verified.mismatched) == (8, [], [])


def test_json_arrays_and_directories_are_read(db_url: str, tenant: str, tmp_path: Path) -> None:
    records = _records(12, tenant)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.json").write_text(json.dumps(records[:5]))
    (tmp_path / "c.json").write_text(json.dumps(records[5]))
    _jsonl(tmp_path / "d.jsonl", records[6:])
    (tmp_path / "ignored.txt").write_text("not a provenance file")
    paths = backfill.files_of(tmp_path, None)
    assert [p.name for p in paths] == ["c.json", "d.jsonl", "b.json"]
    summary = backfill.run(paths, db_url, progress=False)
    assert (summary.read, summary.inserted, summary.invalid) == (12, 12, [])


def test_input_hash_that_does_not_match_the_plan_is_invalid(db_url: str, tenant: str, tmp_path: Path) -> None:
    [record] = _records(1, tenant)
    record["input_hash"] = "0" * 64
    summary = backfill.run([_jsonl(tmp_path / "e.jsonl", [record])], db_url, progress=False)
    assert summary.inserted == 0 and "input_hash does not match the plan" in summary.invalid[0]


def test_dry_run_writes_nothing_and_verify_finds_missing_and_changed(db_url: str, tenant: str,
                                                                     tmp_path: Path) -> None:
    records = _records(10, tenant)
    path = _jsonl(tmp_path / "f.jsonl", records)
    dry = backfill.run([path], db_url, dry_run=True, progress=False)
    assert (dry.read, dry.already_stored, _count(db_url, tenant)) == (10, 0, 0)
    backfill.run([_jsonl(tmp_path / "g.jsonl", records[:8])], db_url, progress=False)
    records[0]["v1_cost_usd"] += 1
    changed = _jsonl(tmp_path / "h.jsonl", records)
    verified = backfill.run([changed], db_url, verify=True, progress=False)
    assert verified.verified == 7
    assert [m.split(": ")[0] for m in verified.mismatched] == [f"{changed}:1"]
    assert verified.missing == [f"{changed}:9", f"{changed}:10"]


def test_cli_prints_the_summary_and_fails_on_invalid(db_url: str, tenant: str, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "i.jsonl", [*_records(3, tenant), "oops"])
    done = subprocess.run(
        [sys.executable, "-m", "incident_loop_dev.cli", "backfill-provenance", "--file", str(path), "--no-progress",
         "--database-url", db_url], capture_output=True, text=True)
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert (report["read"], report["inserted"], report["duplicates"]) == (4, 3, 0)
    assert report["invalid"][0].startswith(f"{path}:4")


def test_a_record_without_a_time_or_with_a_served_the_table_refuses_is_invalid_alone(
        db_url: str, tenant: str, tmp_path: Path) -> None:
    """History without created_at was stamped now (and counted as the last hour's drift); a served other than
    v1 or v2 stopped the whole run at the table's check. Both are invalid lines now, and the rest lands."""
    good = _records(3, tenant)
    untimed = {k: v for k, v in _records(1, tenant, offset=3)[0].items() if k != "created_at"}
    shouted = {**_records(1, tenant, offset=4)[0], "served": "V2"}
    path = _jsonl(tmp_path / "bad.jsonl", [good[0], untimed, good[1], shouted, good[2]])
    summary = backfill.run([path], db_url, batch_size=2, progress=False)
    assert (summary.read, summary.inserted) == (5, 3)
    assert [line.split(": ")[0] for line in summary.invalid] == [f"{path}:2", f"{path}:4"]
    assert _count(db_url, tenant) == 3
