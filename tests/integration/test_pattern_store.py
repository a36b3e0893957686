"""failure_patterns in PostgreSQL: exact counts under concurrency and redelivery, index-only lookups."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row

from incident_loop.grouping.matcher import MemoryPatternIndex, decide
from incident_loop.stores.patterns import PostgresPatternIndex, record_match


def _incident(conn: Any, tenant: str, n: int) -> str:
    incident_id = f"inc_{tenant}_{n}"
    conn.execute(
        "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type, error_message, severity)"
        " VALUES (%(id)s, %(t)s, %(id)s, 'a', 'r', 'E', 'm', 'low')",
        {"id": incident_id, "t": tenant},
    )
    return incident_id


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, row_factory=dict_row, autocommit=True)


def test_redelivered_incident_counts_once(db_url: str, tenant: str) -> None:
    with _connect(db_url) as conn:
        incident = _incident(conn, tenant, 1)
        decision = decide("disk full on volume 7", "E", tenant, PostgresPatternIndex(conn))
        first = record_match(conn, tenant, incident, "E", decision)
        again = record_match(conn, tenant, incident, "E", decide("disk full on volume 7", "E", tenant,
                                                                  PostgresPatternIndex(conn)))
    assert first[1:] == (1, True)
    assert again == (first[0], 1, True)


def test_concurrent_workers_create_one_pattern_with_an_exact_count(db_url: str, tenant: str) -> None:
    workers, per_worker = 8, 10
    with _connect(db_url) as conn:
        incidents = [_incident(conn, tenant, n) for n in range(workers * per_worker)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(mine: list[str]) -> None:
        try:
            with _connect(db_url) as conn:
                barrier.wait()
                for incident in mine:
                    with conn.transaction():
                        decision = decide(f"queue {incident} overflowed", "E", tenant, PostgresPatternIndex(conn))
                        record_match(conn, tenant, incident, "E", decision)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(incidents[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with _connect(db_url) as conn:
        rows = conn.execute("SELECT occurrence_count FROM failure_patterns WHERE tenant_id = %(t)s",
                            {"t": tenant}).fetchall()
    assert [r["occurrence_count"] for r in rows] == [workers * per_worker]


def test_postgres_and_memory_indexes_decide_alike(db_url: str, tenant: str) -> None:
    stream = ["lease lost by worker alpha", "lease lost by worker beta", "cache miss for key 12",
              "lease lost by worker beta", "cache miss for key 99", "lease expired for worker gamma",
              # an exact hit through an alias must leave the generalised template alone
              "lease lost by worker alpha", "lease lost by node gamma", "lease lost by node delta"]
    memory = MemoryPatternIndex()
    with _connect(db_url) as conn:
        pg = PostgresPatternIndex(conn)
        for n, message in enumerate(stream):
            in_memory = decide(message, "E", tenant, memory)
            in_pg = decide(message, "E", tenant, pg)
            assert (in_memory.match_type, in_memory.template) == (in_pg.match_type, in_pg.template)
            memory.record(tenant, "E", in_memory)
            record_match(conn, tenant, _incident(conn, tenant, n), "E", in_pg)


def test_candidate_and_signature_lookups_use_indexes(db_url: str, tenant: str) -> None:
    with _connect(db_url) as conn:
        conn.execute(
            "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type, error_message,"
            " severity) VALUES ('inc_seed_' || %(t)s, %(t)s, 'seed', 'a', 'r', 'E', 'm', 'low')", {"t": tenant})
        conn.execute(
            "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template, category,"
            " first_incident_id, candidate_key)"
            " SELECT 'pat_' || %(t)s || g, %(t)s, 'error', 'E' || (g %% 50), md5(g::text), 'tpl ' || g, 'unknown',"
            " 'inc_seed_' || %(t)s, (g %% 40) || ':tok' || (g %% 97) FROM generate_series(1, 20000) g",
            {"t": tenant},
        )
        conn.execute("INSERT INTO pattern_signatures (tenant_id, signature, pattern_id)"
                     " SELECT tenant_id, signature, id FROM failure_patterns WHERE tenant_id = %(t)s", {"t": tenant})
        conn.execute("ANALYZE failure_patterns")
        conn.execute("ANALYZE pattern_signatures")
        plans = []
        for sql in (
            "EXPLAIN SELECT id, template FROM failure_patterns WHERE tenant_id = %(t)s AND error_type = 'E7'"
            " AND candidate_key = '7:tok7' ORDER BY occurrence_count DESC LIMIT 50",
            "EXPLAIN SELECT pattern_id FROM pattern_signatures WHERE tenant_id = %(t)s AND signature = 'x'",
        ):
            plans.append("\n".join(r["QUERY PLAN"] for r in conn.execute(sql, {"t": tenant}).fetchall()))
    for plan in plans:
        assert "Index" in plan and "Seq Scan" not in plan, plan
