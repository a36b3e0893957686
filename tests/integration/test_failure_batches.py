"""A batch of failures (ingest's SQS batches) is one write on a pooled connection whose bounds were set
when it connected, within the same 2 s; parked together when it cannot be written, never dropped."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from incident_loop.db import transaction
from incident_loop.failures import persist
from incident_loop.failures.persist import WRITE_BOUND_MS, persist_failures
from incident_loop.schemas.failures import FailureIn


def _failures(tenant: str, n: int) -> list[FailureIn]:
    return [FailureIn(run_id=f"run-{i}", tenant_id=tenant, error_code="E_RUNTIME",
                      error_message=f"Skill web_search timed out after {i}s") for i in range(n)]


def _stored(tenant: str) -> int:
    with transaction(tenant_id=tenant) as conn:
        row = conn.execute("SELECT count(*) AS n FROM failure_matches WHERE tenant_id = %(t)s", {"t": tenant})
        return int(row.fetchone()["n"])


def test_a_batch_is_written_once_on_one_reused_connection_bounded_at_connect(
        local_app: Any, tenant: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    persist.connections.close()
    taken: list[Any] = []
    take = persist.connections.take
    monkeypatch.setattr(persist.connections, "take", lambda dsn: taken.append(take(dsn)) or taken[-1])

    first = persist_failures(_failures(tenant, 10), dsn=db_url)
    again = persist_failures(_failures(tenant, 10), dsn=db_url)  # a redelivered batch: nothing new

    assert [o.result for o in first + again] == ["stored"] * 20  # type: ignore[union-attr]
    assert _stored(tenant) == 10
    assert len({id(conn) for conn in taken}) == 1  # one connection, taken again by the second batch
    options = taken[0].info.get_parameters().get("options", "")  # the bound, set when it connected
    assert f"statement_timeout={WRITE_BOUND_MS}" in options and f"lock_timeout={WRITE_BOUND_MS}" in options


def test_a_batch_the_database_cannot_take_within_two_seconds_is_parked_whole(
        local_app: Any, tenant: str, db_url: str) -> None:
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db_url) as conn, conn.transaction():
            conn.execute("LOCK TABLE failure_matches IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(5)
    try:
        started = time.monotonic()
        outcomes = persist_failures(_failures(tenant, 12), dsn=db_url)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert elapsed < 3.5  # the 2 s bound, and the parking after it (the suite shares the CPU)
    assert [o.result for o in outcomes] == ["parked"] * 12  # type: ignore[union-attr]
    local_app.drain()  # the replay function lands them
    assert _stored(tenant) == 12
