"""Pattern-stage batches running at once on PostgreSQL (Lambda containers polling one queue): busy
patterns counted in any order, and new siblings made at the same moment, end as one serial order would."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from incident_loop import db, settings
from incident_loop.grouping.matcher import candidate_key, decide
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.grouping.normalise import normalise
from incident_loop.loop import ingest, match_pattern, stage
from incident_loop.loop.stage import process_batch
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import IncidentMessage
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.stores.patterns import lock_keys
from incident_loop.stores.unit_of_work import PostgresUnitOfWork

A = "disk full on volume 7"
B = "queue overflowed after 30s"
STAGE = LoopStage.PATTERN_MATCHED


class _Queues:
    """Hand-offs kept, not sent: only the pattern stage's transaction is under test."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send_all(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        self.sent.extend(envelopes)
        return [None] * len(envelopes)


class Worker:
    """What one container has: its own connection, as the stage's unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url

    def uow(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(_Queues(), conn=db.connect(self.url, bounded=True))  # type: ignore[arg-type]

    def report(self, tenant: str, messages: Sequence[str]) -> list[Envelope]:
        """The incidents stored and their loops opened (ingest's transaction): their pattern-stage envelopes."""
        uow = self.uow()
        try:
            stored = ingest._store(uow, [
                IncidentMessage(tenant_id=tenant, agent_id="agent", run_id=f"run-{uuid.uuid4().hex}",
                                error_type="ToolError", error_message=m) for m in messages])
        finally:
            uow.conn.close()
        return [ingest._first(incident_id, tenant, loop_id) for incident_id, loop_id, _ in stored]

    def run(self, envelopes: Sequence[Envelope]) -> list[Any]:
        uow = self.uow()
        try:
            return process_batch(envelopes, STAGE, uow=uow)
        finally:
            uow.conn.close()


@pytest.fixture
def worker(loop_env: str) -> Worker:
    return Worker(loop_env)


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often a batch fell back to running its envelopes one by one (what a lost race, a deadlock, costs):
    the fallback hides a deadlock from the results, so the tests count it."""
    calls: list[int] = []
    real = stage._each_alone

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "_each_alone", counted)
    return calls


def _at_once(worker: Worker, batches: list[list[Envelope]]) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in batches]
    barrier = threading.Barrier(len(batches))

    def work(i: int) -> None:
        barrier.wait()
        out[i] = worker.run(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _failed(results: list[Any]) -> list[str]:
    return [f"{type(r).__name__}: {str(r).splitlines()[0]}" for r in results if isinstance(r, Exception)]


def test_busy_patterns_hit_in_opposite_orders_by_two_batches_do_not_deadlock(
        worker: Worker, tenant: str, monkeypatch: pytest.MonkeyPatch, alone: list[int]) -> None:
    """Batch 1 hits A then B, batch 2 B then A, each pausing after its first message until the other has
    counted one too (or a second has passed). Counted as each message came, the two held one row each
    and waited for the other's: a deadlock, and both envelopes of one batch failed."""
    assert _failed(worker.run(worker.report(tenant, [A, B]))) == []
    a1, b1, b2, a2 = worker.report(tenant, [A, B, B, A])
    real = match_pattern.match_pattern
    barrier = threading.Barrier(2)
    seen: dict[int, int] = {}

    def bridge(uow: Any, env: Envelope) -> Any:
        out = real(uow, env)
        me = threading.get_ident()
        seen[me] = seen.get(me, 0) + 1
        if seen[me] == 1:
            try:
                barrier.wait(timeout=1)
            except threading.BrokenBarrierError:  # the other batch waits for this one's locks
                pass
        return out

    monkeypatch.setattr(match_pattern, "match_pattern", bridge)
    first, second = _at_once(worker, [[a1, b1], [b2, a2]])
    assert _failed(first + second) == [] and alone == []


def test_batches_of_hits_on_busy_patterns_all_pass_and_every_count_is_exact(
        worker: Worker, tenant: str, admin_conn: Any, alone: list[int]) -> None:
    """Four workers, five batches each of ten hits on two patterns in a shuffled order (seeded), as SQS
    hands them out. Before the hit patterns were locked in one order, about 80% of envelopes failed."""
    worker.run(worker.report(tenant, [A, B]))
    workers, rounds = 4, 5
    envelopes = worker.report(tenant, [A if n % 2 == 0 else B for n in range(workers * rounds * 10)])
    failures: list[str] = []
    barrier = threading.Barrier(workers)

    def work(w: int) -> None:
        mine = envelopes[w * rounds * 10:(w + 1) * rounds * 10]
        barrier.wait()
        for r in range(rounds):
            batch = mine[r * 10:(r + 1) * 10]
            random.Random(w * 100 + r).shuffle(batch)
            failures.extend(_failed(worker.run(batch)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and alone == []
    counts = admin_conn.execute("SELECT template, occurrence_count FROM failure_patterns WHERE tenant_id = %s"
                                " ORDER BY template", (tenant,)).fetchall()
    assert [(r["template"], r["occurrence_count"]) for r in counts] == [
        (A.replace("7", "<*>"), 1 + workers * rounds * 5), ("queue overflowed after <*>", 1 + workers * rounds * 5)]


def test_new_siblings_made_at_the_same_moment_are_one_pattern_as_in_any_serial_order(
        worker: Worker, tenant: str, admin_conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two new siblings ("... alpha", "... beta": a fuzzy join when one follows the other) in two batches
    at once. Each looked for candidates before the other committed and made its own pattern, a split
    that later messages kept; now the second waits for the first's key and joins its pattern."""
    stream = ["lease lost by worker alpha", "lease lost by worker beta"]
    alpha, beta = worker.report(tenant, stream)
    real = match_pattern.match_pattern
    barrier = threading.Barrier(2)

    def bridge(uow: Any, env: Envelope) -> Any:
        out = real(uow, env)
        try:
            barrier.wait(timeout=1)  # both decided and wrote, neither committed (when both got this far)
        except threading.BrokenBarrierError:
            pass
        return out

    monkeypatch.setattr(match_pattern, "match_pattern", bridge)
    first, second = _at_once(worker, [[alpha], [beta]])
    assert _failed(first + second) == []
    monkeypatch.setattr(match_pattern, "match_pattern", real)
    later = ["lease lost by worker beta", "lease lost by worker gamma"]
    for envelope in worker.report(tenant, later):
        assert _failed(worker.run([envelope])) == []

    rows = admin_conn.execute("SELECT template, occurrence_count FROM failure_patterns WHERE tenant_id = %s",
                              (tenant,)).fetchall()
    memory = MemoryPatternIndex()
    for message in stream + later:
        memory.record(tenant, decide(message, "ToolError", tenant, memory))
    patterns = {memory.record(tenant, decide(m, "ToolError", tenant, memory)) for m in ["lease lost by worker x"]}
    assert sorted((r["template"], r["occurrence_count"]) for r in rows) == [
        (memory.template(p), memory.count(p) - 1) for p in patterns] == [("lease lost by worker <*>", 4)]


def test_new_patterns_made_under_two_keys_in_opposite_orders_do_not_deadlock(
        worker: Worker, tenant: str, monkeypatch: pytest.MonkeyPatch, alone: list[int]) -> None:
    """Batch 1 makes a pattern under key K1 then K2, batch 2 under K2 then K1, each pausing after its first
    message: the keys' locks taken as the messages came deadlocked (a fallback to one by one each time)."""
    k1, k2 = "lease lost by worker alpha", "queue stalled on shard 7 of the index"
    one, two, three, four = worker.report(tenant, [k1, k2, k2, k1])
    real = match_pattern.match_pattern
    barrier = threading.Barrier(2)
    seen: dict[int, int] = {}

    def bridge(uow: Any, env: Envelope) -> Any:
        out = real(uow, env)
        me = threading.get_ident()
        seen[me] = seen.get(me, 0) + 1
        if seen[me] == 1:
            try:
                barrier.wait(timeout=1)
            except threading.BrokenBarrierError:
                pass
        return out

    monkeypatch.setattr(match_pattern, "match_pattern", bridge)
    first, second = _at_once(worker, [[one, two], [three, four]])
    assert _failed(first + second) == [] and alone == []


def _pausing(monkeypatch: pytest.MonkeyPatch, before: bool = False) -> None:
    """Each batch pauses after its first message (or before it: after its read-ahead) until the other has got as
    far (or a second passed)."""
    real = match_pattern.match_pattern
    barrier = threading.Barrier(2)
    seen: dict[int, int] = {}

    def wait() -> None:
        try:
            barrier.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass

    def bridge(uow: Any, env: Envelope) -> Any:
        me = threading.get_ident()
        seen[me] = seen.get(me, 0) + 1
        if before and seen[me] == 1:
            wait()
        out = real(uow, env)
        if not before and seen[me] == 1:
            wait()
        return out

    monkeypatch.setattr(match_pattern, "match_pattern", bridge)


def test_a_join_and_an_exact_hit_on_one_pattern_in_two_batches_do_not_deadlock(
        worker: Worker, tenant: str, monkeypatch: pytest.MonkeyPatch, alone: list[int]) -> None:
    """Batch 1 joins a new sibling onto pattern P (P's row, under P's key); batch 2 hits P exactly (P's row)
    then looks up a new sibling (P's key). Holding the key from its read-ahead while waiting for P's row, and
    the other holding P's row while waiting for the key, they deadlocked (in about one run of three, as the two
    interleave); keys are now taken before rows."""
    assert _failed(worker.run(worker.report(tenant, ["lease lost by worker alpha"]))) == []
    beta, alpha, gamma = worker.report(tenant, ["lease lost by worker beta", "lease lost by worker alpha",
                                                "lease lost by worker gamma"])
    _pausing(monkeypatch)
    first, second = _at_once(worker, [[beta], [alpha, gamma]])
    assert _failed(first + second) == [] and alone == []


def test_two_tenants_in_two_batches_in_opposite_orders_do_not_deadlock(
        worker: Worker, tenant: str, monkeypatch: pytest.MonkeyPatch, alone: list[int]) -> None:
    """A batch's tenants are served in one order for every worker: [A, B] and [B, A] took their keys in
    opposite orders and deadlocked."""
    other = f"{tenant}-b"
    a1, a2 = worker.report(tenant, ["cache shard 3 evicted", "cache shard 4 evicted"])
    b1, b2 = worker.report(other, ["cache shard 3 evicted", "cache shard 4 evicted"])
    _pausing(monkeypatch)
    first, second = _at_once(worker, [[a1, b1], [b2, a2]])
    assert _failed(first + second) == [] and alone == []


def test_one_tenants_keys_held_elsewhere_fail_its_envelopes_and_no_other_tenants(
        worker: Worker, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A storm of tenant A's failure holds A's candidate key (another container's long batch): a batch holding A's
    envelope and tenant B's waited past lock_timeout and failed both, and B's, failing again on every receive, was
    dead-lettered for A's storm. Each tenant's envelopes are run apart then: A's waits, B's goes through."""
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "300")
    settings.get_settings.cache_clear()
    other = f"{tenant}-b"
    [env_a] = worker.report(tenant, [A])
    [env_b] = worker.report(other, [B])
    holder = db.connect(worker.url)
    try:
        with db.transaction(holder, tenant_id=tenant):
            lock_keys(holder, tenant, {("ToolError", candidate_key(normalise(A)))})
            results = worker.run([env_a, env_b])
    finally:
        holder.close()
        monkeypatch.delenv("DB_LOCK_TIMEOUT_MS")
        settings.get_settings.cache_clear()
    assert isinstance(results[0], db.DatabaseLockWait)  # A's own envelope waits for A's storm, and comes back
    assert not isinstance(results[1], Exception), f"tenant B's envelope failed for tenant A's lock: {results[1]!r}"
    assert _failed(worker.run([env_a])) == []  # the lock gone: A's goes through
