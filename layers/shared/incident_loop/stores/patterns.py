"""failure_patterns in PostgreSQL: Bridge 1's PatternIndex and the race-safe occurrence upsert."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from psycopg import Connection

from incident_loop.grouping.matcher import MatchDecision, PatternCandidate, merge

# Enough siblings to find the right one; bounded so a hot key never turns a match into a scan.
MAX_CANDIDATES = 50


class PostgresPatternIndex:
    """The PatternIndex of Bridge 1, answered by two index probes."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def by_signature(self, tenant_id: str, signature: str) -> str | None:
        row = self._conn.execute(
            "SELECT pattern_id FROM pattern_signatures WHERE tenant_id = %(t)s AND signature = %(s)s",
            {"t": tenant_id, "s": signature},
        ).fetchone()
        return None if row is None else str(row["pattern_id"])

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> list[PatternCandidate]:
        rows = self._conn.execute(
            "SELECT id, template FROM failure_patterns"
            " WHERE tenant_id = %(t)s AND error_type = %(e)s AND candidate_key = %(k)s"
            # The index supplies this order: no sort, however many patterns share the key.
            " ORDER BY occurrence_count DESC LIMIT %(n)s",
            {"t": tenant_id, "e": error_type, "k": candidate_key, "n": MAX_CANDIDATES},
        ).fetchall()
        return [PatternCandidate(r["id"], r["template"]) for r in rows]


def get_pattern(conn: Connection[Any], pattern_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM failure_patterns WHERE id = %(id)s", {"id": pattern_id}).fetchone()


def record_match(
    conn: Connection[Any], tenant_id: str, incident_id: str, error_type: str, decision: MatchDecision
) -> tuple[str, int, bool]:
    """Count the incident against its pattern (creating it if new); returns (id, count, created by it).

    The count is the number of pattern_occurrences rows, kept in failure_patterns.occurrence_count
    by incrementing only when this incident's row was inserted: exact under redelivery and
    concurrency. Two workers creating the same new signature end with one pattern.
    """
    pattern_id = decision.pattern_id
    if pattern_id is None:
        conn.execute(
            "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template,"
            " candidate_key, category, first_incident_id) VALUES (%(id)s, %(t)s, %(ptype)s, %(e)s, %(s)s,"
            " %(tpl)s, %(k)s, %(cat)s, %(inc)s) ON CONFLICT (tenant_id, signature) DO NOTHING",
            {"id": f"pat_{uuid4().hex[:16]}", "t": tenant_id, "ptype": decision.pattern_type, "e": error_type,
             "s": decision.signature, "tpl": decision.template, "k": decision.candidate_key,
             "cat": decision.category, "inc": incident_id},
        )
        row = conn.execute(
            "SELECT id FROM failure_patterns WHERE tenant_id = %(t)s AND signature = %(s)s",
            {"t": tenant_id, "s": decision.signature},
        ).fetchone()
        assert row is not None
        pattern_id = str(row["id"])
    elif decision.match_type == "fuzzy":
        # Generalise against the template as it is now (another worker may have generalised it).
        current = conn.execute(
            "SELECT template FROM failure_patterns WHERE id = %(id)s FOR UPDATE", {"id": pattern_id}
        ).fetchone()
        assert current is not None
        merged = merge(decision.template.split(" "), str(current["template"]).split(" "))
        conn.execute("UPDATE failure_patterns SET template = %(tpl)s WHERE id = %(id)s",
                     {"tpl": " ".join(merged), "id": pattern_id})
    conn.execute(
        "INSERT INTO pattern_signatures (tenant_id, signature, pattern_id) VALUES (%(t)s, %(s)s, %(p)s)"
        " ON CONFLICT (tenant_id, signature) DO NOTHING",
        {"t": tenant_id, "s": decision.signature, "p": pattern_id},
    )
    inserted = conn.execute(
        "INSERT INTO pattern_occurrences (pattern_id, incident_id, match_type, confidence)"
        " VALUES (%(p)s, %(i)s, %(m)s, %(c)s) ON CONFLICT DO NOTHING RETURNING incident_id",
        {"p": pattern_id, "i": incident_id, "m": decision.match_type, "c": decision.confidence},
    ).fetchone()
    if inserted is not None:
        conn.execute(
            "UPDATE failure_patterns SET occurrence_count = occurrence_count + 1, last_seen_at = now()"
            " WHERE id = %(id)s",
            {"id": pattern_id},
        )
    row = conn.execute(
        "SELECT p.id, p.occurrence_count, p.first_incident_id FROM pattern_occurrences o"
        " JOIN failure_patterns p ON p.id = o.pattern_id WHERE o.incident_id = %(i)s",
        {"i": incident_id},
    ).fetchone()
    assert row is not None
    return str(row["id"]), int(row["occurrence_count"]), row["first_incident_id"] == incident_id
