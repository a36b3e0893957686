"""failure_patterns in PostgreSQL: exact counts under redelivery and concurrency, the same decisions
as the in-memory index, and lookups that are index probes."""

from __future__ import annotations

import random
import re
import string
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from incident_loop.grouping.decision import MAX_KEY_WORD
from incident_loop.grouping.matcher import MatchDecision, decide
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.stores.patterns import (
    BY_SIGNATURE_SQL,
    CANDIDATES_SQL,
    PostgresPatternIndex,
    record_match,
)
from incident_loop_dev.bench.grouping_latency import merged_into

E = "ToolError"


def _connect(url: str, tenant: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection of the functions' role, scoped to the tenant for its whole session."""
    conn = psycopg.connect(url, autocommit=True, **kwargs)
    conn.execute("SELECT set_config('app.tenant_id', %s, false)", (tenant,))
    return conn


def _incident(conn: psycopg.Connection[Any], tenant: str, n: int) -> str:
    incident_id = f"inc_{tenant}_{n}"
    conn.execute(
        "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type, error_message, severity)"
        " VALUES (%(id)s, %(t)s, %(id)s, 'agent', 'run', %(e)s, 'm', 'low')",
        {"id": incident_id, "t": tenant, "e": E},
    )
    return incident_id


def _match(conn: psycopg.Connection[Any], tenant: str, incident_id: str, message: str) -> tuple[str, int, bool]:
    with conn.transaction():
        return record_match(conn, tenant, incident_id, decide(message, E, tenant, PostgresPatternIndex(conn)))


def _patterns(conn: psycopg.Connection[Any], tenant: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT p.id, p.occurrence_count, (SELECT count(*) FROM pattern_occurrences o WHERE o.pattern_id = p.id),"
        " p.template, p.pattern_type, p.category FROM failure_patterns p WHERE p.tenant_id = %(t)s ORDER BY p.id",
        {"t": tenant},
    ).fetchall()


def _threads(workers: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_new_pattern_is_stored_with_its_type_category_and_id(db_url: str, tenant: str) -> None:
    with _connect(db_url, tenant) as conn:
        pattern_id, count, is_new = _match(conn, tenant, _incident(conn, tenant, 1),
                                           "Skill web_search timed out after 30s")
        [row] = _patterns(conn, tenant)
    assert re.fullmatch(r"pat_[0-9a-f]{16}", pattern_id) and (count, is_new) == (1, True)
    assert row == (pattern_id, 1, 1, "Skill web_search timed out after <*>", "timeout", "timeout")


def test_a_message_whose_first_word_is_a_long_blob_is_stored_and_found_again(db_url: str, tenant: str) -> None:
    """3,000 letters without a digit are one constant word; the candidate key keeps 64 of them, so the
    index entry fits (the whole word made the pattern impossible to store: ProgramLimitExceeded)."""
    rng = random.Random(7)
    blob = "".join(rng.choice(string.ascii_letters) for _ in range(3000))
    with _connect(db_url, tenant) as conn:
        first = _match(conn, tenant, _incident(conn, tenant, 1), f"{blob} failed")
        again = _match(conn, tenant, _incident(conn, tenant, 2), f"{blob} failed")
        sibling = _match(conn, tenant, _incident(conn, tenant, 3), f"{blob} stalled")
        [key] = conn.execute("SELECT DISTINCT candidate_key FROM failure_patterns WHERE tenant_id = %s",
                             (tenant,)).fetchone()
    assert key == f"2:{blob[:MAX_KEY_WORD]}"
    assert first[2] and again == (first[0], 2, False) and sibling[0] != first[0]


def test_redelivered_incident_counts_once(db_url: str, tenant: str) -> None:
    with _connect(db_url, tenant) as conn:
        incident = _incident(conn, tenant, 1)
        first = _match(conn, tenant, incident, "disk full on volume 7")
        again = _match(conn, tenant, incident, "disk full on volume 7")
        later = _match(conn, tenant, _incident(conn, tenant, 2), "disk full on volume 9")
    assert first[1:] == (1, True)
    assert again == first
    assert later == (first[0], 2, False)


def test_concurrent_workers_creating_one_signature_end_with_one_pattern_and_an_exact_count(
    db_url: str, tenant: str
) -> None:
    workers, per_worker = 8, 10
    with _connect(db_url, tenant) as conn:
        incidents = [_incident(conn, tenant, n) for n in range(workers * per_worker)]

    def work(i: int) -> None:
        with _connect(db_url, tenant) as conn:
            for incident in incidents[i::workers]:
                _match(conn, tenant, incident, f"queue {incident} overflowed after 30s")

    _threads(workers, work)
    with _connect(db_url, tenant) as conn:
        rows = _patterns(conn, tenant)
        kinds = dict(conn.execute(
            "SELECT o.match_type, count(*) FROM pattern_occurrences o JOIN failure_patterns p ON p.id = o.pattern_id"
            " WHERE p.tenant_id = %(t)s GROUP BY 1", {"t": tenant}).fetchall())
    assert [(count, occurrences) for _, count, occurrences, *_ in rows] == [(80, 80)]
    assert kinds == {"new": 1, "exact": 79}  # whoever lost the race to create it joined it


def test_concurrent_deliveries_of_one_incident_count_it_once(db_url: str, tenant: str) -> None:
    with _connect(db_url, tenant) as conn:
        incident = _incident(conn, tenant, 1)
    results: list[tuple[str, int, bool]] = []

    def work(i: int) -> None:
        with _connect(db_url, tenant) as conn:
            results.append(_match(conn, tenant, incident, "lease lost by worker alpha"))

    _threads(6, work)
    with _connect(db_url, tenant) as conn:
        rows = _patterns(conn, tenant)
    assert len(set(results)) == 1 and results[0][1:] == (1, True)
    assert [(count, occurrences) for _, count, occurrences, *_ in rows] == [(1, 1)]


def test_concurrent_siblings_keep_every_count_exact(db_url: str, tenant: str) -> None:
    families = ["lease lost by worker {}", "cache miss for key {} in region {}", "Tool {} failed on input {}"]
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    messages = [f.format(words[n % 5], words[(n // 5) % 5]) for n in range(60) for f in families[n % 3: n % 3 + 1]]
    with _connect(db_url, tenant) as conn:
        incidents = [_incident(conn, tenant, n) for n in range(len(messages))]

    def work(i: int) -> None:
        with _connect(db_url, tenant) as conn:
            for n in range(i, len(messages), 4):
                _match(conn, tenant, incidents[n], messages[n])

    _threads(4, work)
    with _connect(db_url, tenant) as conn:
        rows = _patterns(conn, tenant)
    assert all(count == occurrences for _, count, occurrences, *_ in rows)
    assert sum(count for _, count, *_ in rows) == len(messages)


def test_fuzzy_join_generalises_the_template_and_makes_the_sibling_exact(db_url: str, tenant: str) -> None:
    with _connect(db_url, tenant, row_factory=dict_row) as conn:  # the loop's connections have dict rows
        pattern_id, _, _ = _match(conn, tenant, _incident(conn, tenant, 1), "lease lost by worker alpha")
        index = PostgresPatternIndex(conn)
        near = decide("lease lost by worker beta", E, tenant, index)
        assert (near.match_type, near.pattern_id) == ("fuzzy", pattern_id)
        with conn.transaction():
            assert record_match(conn, tenant, _incident(conn, tenant, 2), near) == (pattern_id, 2, False)
        again = decide("lease lost by worker beta", E, tenant, index)
        [row] = _patterns(conn, tenant)
    assert (again.match_type, again.pattern_id) == ("exact", pattern_id)
    assert row["template"] == "lease lost by worker <*>"


def test_the_older_call_with_an_error_type_still_records(db_url: str, tenant: str) -> None:
    with _connect(db_url, tenant) as conn:
        decision = decide("disk full on volume 7", E, tenant, PostgresPatternIndex(conn))
        assert record_match(conn, tenant, _incident(conn, tenant, 1), E, decision)[1:] == (1, True)


def test_postgres_and_memory_indexes_decide_alike(db_url: str, tenant: str) -> None:
    stream = [
        ("lease lost by worker alpha", E), ("lease lost by worker beta", E), ("cache miss for key 12", E),
        ("lease lost by worker beta", E), ("cache miss for key 99", E), ("lease expired for worker gamma", E),
        ("lease lost by worker alpha", E),  # an exact hit through an alias leaves the template alone
        ("lease lost by node gamma", E), ("lease lost by node delta", "OtherError"),
        ("Skill web_search timed out after 30s", E), ("Skill web_search timed out after 2 min", E),
        ("Skill web_search returned HTTP 503 from https://api.example.com/v1", E),
        ("Skill web_search returned HTTP 502 from https://api.example.com/v2", E),
        ("Tool calculator failed on input alpha", E), ("Tool calculator failed on output beta", E),
        # A settled pattern (three members) refuses another word: a pattern of its own.
        *[("Denied user root from 10.0.0.3", E)] * 3, ("Denied user guest from 10.0.0.4", E),
        # Names that come in runs: seven settled siblings, then an eighth name merges them into the oldest.
        *[(f"connection from {name} closed by peer", E) for name in
          ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf") for _ in range(3)],
        ("connection from hotel closed by peer", E), ("connection from india closed by peer", E),
    ]
    expected = {"Denied user guest from 10.0.0.4": "new", "connection from hotel closed by peer": "fuzzy"}
    memory = MemoryPatternIndex()
    memory_ids, pg_ids = [], []
    with _connect(db_url, tenant) as conn:
        pg = PostgresPatternIndex(conn)
        for n, (message, error_type) in enumerate(stream):
            in_memory = decide(message, error_type, tenant, memory)
            in_pg = decide(message, error_type, tenant, pg)
            assert (in_memory.match_type, in_memory.template, in_memory.merged_template, in_memory.confidence,
                    len(in_memory.absorbed)) == (in_pg.match_type, in_pg.template, in_pg.merged_template,
                                                 in_pg.confidence, len(in_pg.absorbed)), message
            assert in_pg.match_type == expected.get(message, in_pg.match_type), message
            memory_ids.append(memory.record(tenant, in_memory))
            with conn.transaction():
                pg_ids.append(record_match(conn, tenant, _incident(conn, tenant, n), in_pg)[0])
        merges = merged_into(conn, tenant)
        rows = _patterns(conn, tenant)
        stored = {pid: template for pid, _, _, template, *_ in rows if pid not in merges}
    assert len(merges) == 6 and len(set(merges.values())) == 1  # the seven siblings are one pattern now
    [survivor] = set(merges.values())
    counts = {pid: n for pid, n, *_ in rows}
    assert counts[survivor] == 7 * 3 + 2 and stored[survivor] == "connection from <*> closed by peer"
    pg_ids = [merges.get(pid, pid) for pid in pg_ids]
    memory_ids = [memory.resolve(pid) for pid in memory_ids]
    mapping = dict(zip(memory_ids, pg_ids, strict=True))
    assert len(set(mapping.values())) == len(mapping)  # the same partition of the stream
    assert {mapping[m]: memory.template(m) for m in mapping} == stored  # and the same templates


def test_a_sibling_made_late_in_a_long_transaction_merges_as_in_memory(db_url: str, tenant: str) -> None:
    """first_seen_at is the transaction's start: a batch that began before other workers' siblings were committed
    stamps its own sibling as the oldest of them all. The merge's choice of place and survivor does not depend on
    that order, so PostgreSQL merges what memory merges."""
    a_family = [f"pool {w} idle now" for w in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")]
    b_family = [f"pool main {w} now" for w in ("red", "green", "blue", "cyan", "pink", "grey", "teal")]
    stream, late = a_family + b_family[:-1], b_family[-1]
    memory = MemoryPatternIndex()
    with _connect(db_url, tenant) as slow, _connect(db_url, tenant) as fast:
        with slow.transaction():
            slow.execute("SELECT 1")  # the slow batch has begun: its now() is fixed from here
            for n, message in enumerate(stream):  # other workers' batches, committed meanwhile
                memory.record(tenant, decide(message, E, tenant, memory))
                with fast.transaction():
                    record_match(fast, tenant, _incident(fast, tenant, n), decide(message, E, tenant,
                                                                                  PostgresPatternIndex(fast)))
            memory.record(tenant, decide(late, E, tenant, memory))
            record_match(slow, tenant, _incident(slow, tenant, 99), decide(late, E, tenant, PostgresPatternIndex(slow)))
        in_memory = decide("pool main idle now", E, tenant, memory)
        in_pg = decide("pool main idle now", E, tenant, PostgresPatternIndex(fast))
        templates = {pid: template for pid, _, _, template, *_ in _patterns(fast, tenant)}
    assert in_memory.merged_template == in_pg.merged_template == "pool <*> idle now"
    assert memory.template(in_memory.pattern_id) == templates[str(in_pg.pattern_id)] == "pool alpha idle now"
    assert sorted(memory.template(p) for p in in_memory.absorbed) == sorted(templates[p] for p in in_pg.absorbed)


def test_signature_and_candidate_lookups_are_index_probes(db_url: str, tenant: str, admin_conn: Any) -> None:
    with _connect(db_url, tenant) as conn:
        seed = _incident(conn, tenant, 0)
        conn.execute(
            "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template, category,"
            " first_incident_id, candidate_key)"
            " SELECT 'pat_' || %(t)s || g, %(t)s, 'error', 'E' || (g %% 50), md5(g::text), 'tpl ' || g, 'unknown',"
            " %(seed)s, (g %% 40) || ':tok' || (g %% 97) FROM generate_series(1, 20000) g",
            {"t": tenant, "seed": seed},
        )
        conn.execute("INSERT INTO pattern_signatures (tenant_id, signature, pattern_id)"
                     " SELECT tenant_id, signature, id FROM failure_patterns WHERE tenant_id = %(t)s", {"t": tenant})
        admin_conn.execute("ANALYZE failure_patterns")  # only the owner may
        admin_conn.execute("ANALYZE pattern_signatures")
        plans = [
            "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
            for sql, params in (
                (CANDIDATES_SQL, {"t": tenant, "e": "E7", "k": "7:tok7", "n": 100}),
                (BY_SIGNATURE_SQL, {"t": tenant, "s": "x"}),
            )
        ]
    for plan in plans:
        assert "Index" in plan and "Seq Scan" not in plan, plan


def test_a_pattern_absorbed_twice_over_names_the_pattern_its_incidents_meet_now(db_url: str, tenant: str) -> None:
    """A merges into B, then B into C: A names C (one hop), as memory resolves it, and A's signature hits C."""
    memory = MemoryPatternIndex()
    with _connect(db_url, tenant) as conn:
        ids, mine = [], []
        for n, message in enumerate(("queue one stalled", "disk two stalled", "link three stalled")):
            new = decide(message, E, tenant, PostgresPatternIndex(conn))
            ids.append(_match(conn, tenant, _incident(conn, tenant, n), message)[0])
            mine.append(memory.record(tenant, new))
        for n, (into, gone) in enumerate(((1, 0), (2, 1)), 10):
            message = f"{('disk', 'link')[into - 1]} merge{n} stalled"
            new = decide(message, E, tenant, PostgresPatternIndex(conn))
            for index, pattern_ids in ((None, ids), (memory, mine)):
                fuzzy = MatchDecision("fuzzy", pattern_ids[into], 0.5, new.signature, new.template, new.template, E,
                                      message, absorbed=(pattern_ids[gone],))
                if index is None:
                    with conn.transaction():
                        record_match(conn, tenant, _incident(conn, tenant, n), fuzzy)
                else:
                    index.record(tenant, fuzzy)
        found = merged_into(conn, tenant)
        hit = PostgresPatternIndex(conn).by_signature(tenant, decide("queue one stalled", E, tenant, memory).signature)
        counts = {pid: n for pid, n, *_ in _patterns(conn, tenant)}
    assert found == {ids[0]: ids[2], ids[1]: ids[2]}
    assert [memory.resolve(p) for p in mine] == [mine[2]] * 3
    assert hit is not None and hit.pattern_id == ids[2]
    assert counts[ids[2]] == memory.count(mine[2]) == 5


def test_the_keys_bridge_3_holds_shared_keep_a_merge_of_their_patterns_waiting_until_it_commits(
        db_url: str, tenant: str) -> None:
    """Bridge 3 holds its batch's candidate keys shared (generate_policy.read_ahead): a merge, which holds its key
    alone first (candidates()), waits for its commit, so a policy Bridge 3 makes for a pattern the merge absorbs is
    committed when the merge looks for policies to retire. Sharers do not wait for each other."""
    from incident_loop.stores.patterns import LOCK_KEY_SQL, PostgresPatternStore

    with _connect(db_url, tenant) as conn, _connect(db_url, tenant) as merger, _connect(db_url, tenant) as other:
        pattern = _match(conn, tenant, _incident(conn, tenant, 1), "disk two stalled")[0]
        row = PostgresPatternStore(conn).get(tenant, pattern)
        assert row is not None
        key = (row["error_type"], row["candidate_key"])
        merger.execute("SET lock_timeout = '300ms'")
        for shared, blocked in ((False, False), (True, True)):
            with conn.transaction():
                if shared:
                    PostgresPatternStore(conn).lock_keys(tenant, {key}, shared=True)
                    with other.transaction():  # another Bridge 3 batch
                        PostgresPatternStore(other).lock_keys(tenant, {key}, shared=True)
                try:
                    with merger.transaction():
                        merger.execute(LOCK_KEY_SQL, {"t": tenant, "e": key[0], "k": key[1]})
                    assert not blocked
                except psycopg.errors.LockNotAvailable:
                    assert blocked


def _runs() -> list[str]:
    """A stream the sibling merge acts on as values in runs call for: the siblings' templates hold <*> where the
    message holds a word (a worker's name, on every line), and one holds a value where the survivor holds a word."""
    workers = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"]
    hosts = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    stream = [f"worker {workers[(n + k) % 10]} lost connection from {host} after retries"
              for n, host in enumerate(hosts[:7]) for k in range(4)]
    stream += ["worker kiwi lost connection from golf after 0x00ab12",
               "worker kiwi lost connection from hotel after retries"]
    return stream


def test_a_sibling_merge_of_values_in_runs_leaves_the_same_pattern_as_in_memory(db_url: str, tenant: str) -> None:
    """A sibling merge whose siblings hold <*> where the message holds a word, and whose survivor takes on a value an
    absorbed sibling held: PostgreSQL records it as memory does (one pattern, the same template and count)."""
    memory = MemoryPatternIndex()
    with _connect(db_url, tenant) as conn:
        in_pg, in_memory = [], []
        for n, message in enumerate(_runs()):
            in_memory.append(memory.record(tenant, decide(message, E, tenant, memory)))
            in_pg.append(_match(conn, tenant, _incident(conn, tenant, n), message)[0])
        merges = merged_into(conn, tenant)
        rows = {pid: (count, template) for pid, count, _, template, *_ in _patterns(conn, tenant)}

    def resolve(pattern_id: str) -> str:
        while pattern_id in merges:
            pattern_id = merges[pattern_id]
        return pattern_id

    assert {resolve(p) for p in in_pg} == {resolve(in_pg[-1])} and len(merges) == 6
    assert {memory.resolve(p) for p in in_memory} == {memory.resolve(in_memory[-1])}
    survivor = memory.resolve(in_memory[-1])
    assert rows[resolve(in_pg[-1])] == (memory.count(survivor), memory.template(survivor)) == (
        30, "worker <*> lost connection from <*> after <*>")
