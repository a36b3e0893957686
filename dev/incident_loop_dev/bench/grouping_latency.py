"""Bridge 1's grouping on PostgreSQL: the real path (decide + record_match) and decide()'s latency as the
stored patterns grow from 10^3 to 10^6 (`incident-loop bench grouping --db --latency`)."""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack
from typing import Any

import psycopg

from incident_loop.grouping.matcher import candidate_key, decide
from incident_loop.grouping.normalise import normalise, signature
from incident_loop_dev.bench.grouping_loo import ERROR_TYPE, TENANT
from incident_loop_dev.bench.scratch import scratch_database


def group_in_postgres(messages: list[str], admin_url: str) -> tuple[list[str], float]:
    """Each message as an incident through decide() on PostgresPatternIndex and record_match(),
    one transaction each; returns the pattern ids and msgs/s (wall clock: the database's time counts)."""
    from incident_loop.stores.patterns import PostgresPatternIndex, record_match

    out: list[str] = []
    with scratch_database(admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        index = PostgresPatternIndex(conn)
        start = time.perf_counter()
        for n, message in enumerate(messages):
            incident_id = f"inc_{n:08d}"
            with conn.transaction():
                conn.execute(
                    "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type,"
                    " error_message, severity) VALUES (%(id)s, %(t)s, %(id)s, 'bench', 'bench', %(e)s, %(m)s, 'low')",
                    {"id": incident_id, "t": TENANT, "e": ERROR_TYPE, "m": message},
                )
                decision = decide(message, ERROR_TYPE, TENANT, index)
                out.append(record_match(conn, TENANT, incident_id, decision)[0])
        elapsed = time.perf_counter() - start
        merges = merged_into(conn, TENANT)
    resolved = []
    for pattern_id in out:  # a pattern merged into a sibling since is the sibling
        while pattern_id in merges:
            pattern_id = merges[pattern_id]
        resolved.append(pattern_id)
    return resolved, len(messages) / elapsed


def merged_into(conn: psycopg.Connection[Any], tenant_id: str) -> dict[str, str]:
    """Every absorbed pattern of the tenant and the one it was merged into (to resolve groups at the end)."""
    rows = conn.execute("SELECT id, merged_into FROM failure_patterns WHERE tenant_id = %(t)s"
                        " AND merged_into IS NOT NULL", {"t": tenant_id}).fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def _word(n: int) -> str:
    """A digit-free word per number, so the normaliser keeps it as a constant token."""
    letters = ""
    while True:
        n, r = divmod(n, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[r]
        if n == 0:
            return letters


SIBLINGS_PER_KEY = 5  # the same at every size: the figures show the probes, not more comparisons


def _message(n: int, last: str = "tries") -> str:
    return f"op{_word(n // SIBLINGS_PER_KEY)} failed on shard{_word(n % SIBLINGS_PER_KEY)} after {n % 7 + 2} {last}"


def _load_patterns(conn: psycopg.Connection[Any], size: int) -> None:
    """`size` synthetic patterns, bulk-loaded with COPY, each with its signature alias."""
    with conn.cursor() as cur:
        with cur.copy("COPY failure_patterns (id, tenant_id, pattern_type, error_type, signature, template,"
                      " category, occurrence_count, first_incident_id, candidate_key) FROM STDIN") as copy:
            for n in range(size):
                toks = normalise(_message(n))
                text = " ".join(toks)
                copy.write_row((f"pat_{n:016x}", TENANT, "error", ERROR_TYPE, signature(ERROR_TYPE, text), text,
                                "unknown", 1, "inc_seed", candidate_key(toks)))
        cur.execute("INSERT INTO pattern_signatures (tenant_id, signature, pattern_id)"
                    " SELECT tenant_id, signature, id FROM failure_patterns")
    # Steady state, as autovacuum leaves a table: hint bits set, statistics current.
    conn.execute("VACUUM (ANALYZE) failure_patterns")
    conn.execute("VACUUM (ANALYZE) pattern_signatures")


def match_latency(admin_url: str, sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000),
                  probes: int = 1_000, rounds: int = 7) -> list[dict[str, Any]]:
    """Median and p95 of decide() against PostgresPatternIndex with 10^3..10^6 stored patterns: half
    exact hits, half near misses that go on to the candidate probe, spread over every pattern. One
    database per size, probed in turn round after round, so a busy moment on a shared machine falls
    on every size alike."""
    from incident_loop.stores.patterns import PostgresPatternIndex

    with ExitStack() as stack:
        indexes = []
        for size in sizes:
            conn = stack.enter_context(psycopg.connect(stack.enter_context(scratch_database(admin_url)),
                                                       autocommit=True))
            _load_patterns(conn, size)
            indexes.append(PostgresPatternIndex(conn))
        timings: dict[int, list[float]] = defaultdict(list)
        round_medians: dict[int, list[float]] = defaultdict(list)
        kinds: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in range(rounds):
            for size, index in zip(sizes, indexes, strict=True):
                pick, this_round = random.Random(size * 100 + r), []
                for i in range(probes):
                    message = _message(pick.randrange(size), "tries" if i % 2 == 0 else "attempts")
                    start = time.perf_counter()
                    decision = decide(message, ERROR_TYPE, TENANT, index)
                    this_round.append((time.perf_counter() - start) * 1000)
                    kinds[size][decision.match_type] += 1
                round_medians[size].append(statistics.median(this_round))
                timings[size] += this_round
    return [{"patterns": size, "median_ms": round(statistics.median(round_medians[size]), 4),
             "p95_ms": round(sorted(timings[size])[int(0.95 * len(timings[size])) - 1], 4),
             "probes": len(timings[size]), **{f"{k}_decisions": v for k, v in sorted(kinds[size].items())}}
            for size in sizes]
