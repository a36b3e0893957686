"""sync-catalog loads the reviewed catalog into PostgreSQL, once per version; matching reads it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import yaml
from psycopg.rows import dict_row

from incident_loop.catalog.lookup import CATALOG_FILE, Catalog
from incident_loop.catalog.sync import load


def _sync(url: str, file: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "incident_loop_dev.cli", "sync-catalog", "--database-url", url]
    return subprocess.run(cmd + (["--file", str(file)] if file else []), capture_output=True, text=True,
                          check=True).stdout


def test_sync_twice_stores_each_version_once_and_a_new_version_wins(empty_db_url: str, tmp_path: Path) -> None:
    from incident_loop import migrate

    migrate.apply(empty_db_url)
    shipped = Catalog.from_file()
    assert f"{len(shipped.entries)} new" in _sync(empty_db_url)
    assert "0 new" in _sync(empty_db_url)
    data = yaml.safe_load(CATALOG_FILE.read_text())
    data["entries"][0] = {**data["entries"][0], "version": 2, "severity": "critical"}
    edited = tmp_path / "errors.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert "1 new" in _sync(empty_db_url, edited)
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        catalog = load(conn)
        count = conn.execute("SELECT count(*) AS n FROM error_catalog").fetchone()
    assert catalog is not None and count is not None
    assert count["n"] == len(shipped.entries) + 1
    first = data["entries"][0]["code"]
    match = catalog.match(first, None)
    assert (match.catalog_entry_id, match.entry.severity if match.entry else None) == (f"{first}@v2", "critical")
    assert catalog.match("E_X", "429 Too Many Requests").catalog_entry_id == "RATE_LIMITED@v1"


def test_the_synced_catalog_keeps_the_files_order_and_matches_as_the_file_does(
        empty_db_url: str, tmp_path: Path) -> None:
    """A message may match several entries' patterns: the first in the file's order wins. Read back by code, the
    database copy gave some messages another entry (another retryability) than the shipped file, its fallback."""
    from incident_loop import migrate

    migrate.apply(empty_db_url)
    shipped = Catalog.from_file()
    _sync(empty_db_url)
    messages = ["API rate limit exceeded (HTTP 403)", "upstream 502 Bad Gateway: connection reset by peer",
                "read timeout after 30s: 429 Too Many Requests"]
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        synced = load(conn)
    assert synced is not None
    assert [e.code for e in synced.entries] == [e.code for e in shipped.entries]
    assert [synced.match("E_HTTP", m).catalog_entry_id for m in messages] == [
        shipped.match("E_HTTP", m).catalog_entry_id for m in messages]
    assert len({shipped.match("E_HTTP", m).catalog_entry_id for m in messages}) == 3

    data = yaml.safe_load(CATALOG_FILE.read_text())  # the reviewed file reordered: the new order holds
    data["entries"].reverse()
    reordered = tmp_path / "errors.yaml"
    reordered.write_text(yaml.safe_dump(data))
    assert "0 new" in _sync(empty_db_url, reordered)
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        again = load(conn)
    assert again is not None and [e.code for e in again.entries] == [e["code"] for e in data["entries"]]
