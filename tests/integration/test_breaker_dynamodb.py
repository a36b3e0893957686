"""The breaker on moto's server over HTTP and the real PostgreSQL: of racing workers, exactly one wins."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.rows import dict_row

from incident_loop.aws import DYNAMODB_CONFIG
from incident_loop.breaker import (
    Breaker,
    BreakerConfig,
    BreakerState,
    ConsecutiveFailures,
    DynamoBreakerStore,
    FailMode,
    Transition,
    ensure_table,
)
from incident_loop.stores.breaker_history import PostgresHistory, recent
from incident_loop_dev.local.services import free_port, moto_server

TABLE = "breakers-integration"
WORKERS = 16
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_server() as url:
        ensure_table(boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1"), TABLE)
        yield url


def _workers(endpoint: str, db_url: str, name: str, config: BreakerConfig,
             won: list[Transition]) -> list[Breaker]:
    """WORKERS breakers on one item, each with its own client and history connection (separate containers)."""
    breakers = []
    for i in range(WORKERS):
        client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        breakers.append(Breaker(name, config, store=DynamoBreakerStore(TABLE, client),
                                history=PostgresHistory(db_url), on_transition=[won.append], worker=f"w{i}"))
    return breakers


def _all_at_once(breakers: list[Breaker], action: Callable[[Breaker], Any]) -> list[Any]:
    barrier = threading.Barrier(len(breakers))

    def run(breaker: Breaker) -> Any:
        barrier.wait()
        return action(breaker)

    with ThreadPoolExecutor(len(breakers)) as pool:
        return list(pool.map(run, breakers))


def _history(db_url: str, name: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return list(reversed(recent(conn, name, limit=100)))


def _trip_until_open(breaker: Breaker) -> None:
    for _ in range(20):
        record = breaker.cached()
        if record is not None and record.state is not CLOSED:
            return
        breaker.record_failure("dependency down")
    raise AssertionError("never saw the breaker open")


def test_sixteen_workers_racing_to_trip_make_one_transition_and_one_history_row(endpoint: str,
                                                                               db_url: str) -> None:
    name, won = f"skill:race-{uuid.uuid4().hex[:8]}", []  # type: ignore[var-annotated]
    breakers = _workers(endpoint, db_url, name, BreakerConfig(rule=ConsecutiveFailures(5, 60.0)), won)
    for breaker in breakers:
        breaker.refresh()  # every worker holds version 0

    _all_at_once(breakers, _trip_until_open)

    assert [(t.from_state, t.to_state) for t in won] == [(CLOSED, OPEN)]
    assert all(b.cached().state is OPEN for b in breakers)  # the losers saw the winner's state
    status = breakers[0].status()
    assert status.state is OPEN and status.version == 1 and status.consecutive_failures >= 5
    rows = _history(db_url, name)
    assert [(r["from_state"], r["to_state"], r["version"]) for r in rows] == [("CLOSED", "OPEN", 1)]
    assert rows[0]["changed_by"] == won[0].changed_by and rows[0]["details"]["consecutive_failures"] >= 5


def test_sixteen_workers_racing_to_auto_recover_make_one_recovery(endpoint: str, db_url: str) -> None:
    name, won = f"skill:recover-{uuid.uuid4().hex[:8]}", []  # type: ignore[var-annotated]
    config = BreakerConfig(rule=ConsecutiveFailures(5, 0.2), cooldown_s=0.2)
    breakers = _workers(endpoint, db_url, name, config, won)
    for _ in range(5):
        breakers[0].record_failure("dependency down")
    for breaker in breakers:
        breaker.refresh()  # everyone sees it OPEN
    time.sleep(0.25)

    def recover(breaker: Breaker) -> tuple[BreakerState, int] | None:
        if not breaker.allow():
            return None
        seen = breaker.cached()
        breaker.record_success()
        return seen.state, seen.version

    admitted = [seen for seen in _all_at_once(breakers, recover) if seen is not None]

    # One probe, admitted in HALF_OPEN; a straggler whose write lost after the probe closed it may pass too.
    assert admitted.count((HALF_OPEN, 2)) == 1 and set(admitted) <= {(HALF_OPEN, 2), (CLOSED, 3)}
    assert [(t.from_state, t.to_state) for t in won] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert won[1].changed_by == won[2].changed_by  # the worker that moved it to HALF_OPEN was its probe
    assert breakers[0].status().state is CLOSED
    rows = _history(db_url, name)
    assert [(r["from_state"], r["to_state"], r["version"]) for r in rows] == [
        ("CLOSED", "OPEN", 1), ("OPEN", "HALF_OPEN", 2), ("HALF_OPEN", "CLOSED", 3)]


def test_a_retried_history_write_is_idempotent(db_url: str) -> None:
    name = f"skill:history-{uuid.uuid4().hex[:8]}"
    transition = Transition(breaker=name, from_state=CLOSED, to_state=OPEN, version=1, reason="5 failures",
                            changed_by="w0", at=datetime.now(UTC), details={"consecutive_failures": 5})
    history = PostgresHistory(db_url)
    history.write(transition)
    history.write(transition)
    history.close_connection()
    rows = _history(db_url, name)
    assert len(rows) == 1 and rows[0]["details"] == {"consecutive_failures": 5}


@pytest.mark.parametrize(("mode", "allowed"), [(FailMode.OPEN, True), (FailMode.CLOSED, False)])
def test_dynamodb_unreachable_over_http_answers_with_the_fail_mode(mode: FailMode, allowed: bool) -> None:
    client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1",
                          config=DYNAMODB_CONFIG)
    breaker = Breaker("costsim-v2", BreakerConfig(fail_mode=mode), store=DynamoBreakerStore(TABLE, client),
                      history=PostgresHistory("postgresql://unused@127.0.0.1:1/none"))
    started = time.monotonic()
    assert breaker.allow() is allowed
    breaker.report_drift(0.5)  # backs off for cache_ttl_s: no second wait
    assert time.monotonic() - started < 5


def test_a_history_write_that_failed_is_not_tried_again_until_the_back_off_has_passed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each transition's history write runs in the guarded call: after one failure the next ones do not wait on
    the database again (each waited out the connect timeout, 5 s, where catalog-persist's budget is 2 s)."""
    from incident_loop.breaker import BreakerState, Transition
    from incident_loop.db import DatabaseUnavailable
    from incident_loop.stores import breaker_history

    attempts: list[int] = []
    real = breaker_history.connect

    def counted(*args: object, **kwargs: object) -> object:
        attempts.append(int(kwargs["connect_timeout_s"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(breaker_history, "connect", counted)
    now = [1000.0]
    history = breaker_history.PostgresHistory("postgresql://postgres@127.0.0.1:1/none", clock=lambda: now[0])
    t = Transition(breaker="skill:h", from_state=BreakerState.CLOSED, to_state=BreakerState.OPEN, version=1,
                   reason="r", changed_by="w", at=datetime.now(UTC), details={})
    with pytest.raises(DatabaseUnavailable):
        history.write(t)
    with pytest.raises(breaker_history.HistoryUnavailable):
        history.write(t)
    now[0] += breaker_history.BACKOFF_S
    with pytest.raises(DatabaseUnavailable):
        history.write(t)
    assert attempts == [breaker_history.CONNECT_TIMEOUT_S] * 2
