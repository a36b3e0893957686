"""backfill-provenance as the table's owner: new batches go straight in by COPY, and whatever is stored
already (a re-run, a resumed file, a key repeated in a batch) still goes in exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from incident_loop.stores.costsim import writes_every_tenant
from incident_loop_dev import backfill
from incident_loop_dev.bench.backfill import generate


def _file(path: Path, tenant: str, n: int, start: int = 0) -> Path:
    lines = []
    for i, record in enumerate(generate(start + n)):
        if i >= start:
            record["tenant_id"] = f"{tenant}-{i % 3}"
            record["plan"]["steps"][0]["skill"] = f"{tenant}-{i}"  # this test's own input hashes
            lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def _stored(admin_conn: Any, tenant: str) -> int:
    row = admin_conn.execute("SELECT count(*) AS n FROM costsim_provenance WHERE tenant_id LIKE %s", (f"{tenant}-%",))
    return int(row.fetchone()["n"])


def test_the_owner_writes_every_tenant_and_the_functions_role_does_not(admin_db_url: str, db_url: str) -> None:
    with psycopg.connect(admin_db_url) as owner, psycopg.connect(db_url) as function_role:
        assert writes_every_tenant(owner) and not writes_every_tenant(function_role)


def test_a_fresh_file_goes_straight_in_and_a_rerun_inserts_nothing(admin_db_url: str, admin_conn: Any, tenant: str,
                                                                   tmp_path: Path) -> None:
    path = _file(tmp_path / "fresh.jsonl", tenant, 25)
    first = backfill.run([path], admin_db_url, batch_size=10, progress=False)
    again = backfill.run([path], admin_db_url, batch_size=10, progress=False)
    assert (first.read, first.inserted, first.duplicates) == (25, 25, 0)
    assert (again.inserted, again.duplicates) == (0, 25)
    assert _stored(admin_conn, tenant) == 25


def test_a_resumed_file_and_a_key_repeated_in_a_batch_go_in_once(admin_db_url: str, admin_conn: Any, tenant: str,
                                                                 tmp_path: Path) -> None:
    done = _file(tmp_path / "part.jsonl", tenant, 12)
    backfill.run([done], admin_db_url, batch_size=10, progress=False)
    whole = _file(tmp_path / "whole.jsonl", tenant, 30)
    lines = whole.read_text().splitlines()
    whole.write_text("\n".join([*lines[:25], lines[24], *lines[25:]]) + "\n")  # one record twice, one batch
    resumed = backfill.run([whole], admin_db_url, batch_size=10, progress=False)
    assert (resumed.read, resumed.inserted, resumed.duplicates) == (31, 18, 13)
    assert _stored(admin_conn, tenant) == 30
    verified = backfill.run([whole], admin_db_url, verify=True, progress=False)
    assert (verified.verified, verified.missing, verified.mismatched) == (31, [], [])
