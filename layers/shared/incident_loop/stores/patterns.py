"""failure_patterns in PostgreSQL: Bridge 1's PatternIndex and the race-safe occurrence upsert.

Two index probes answer the matcher: pattern_signatures (every signature a pattern has absorbed, its own included)
for exact hits, (tenant_id, error_type, candidate_key) for fuzzy candidates. No scan, no pg_trgm (seed 000, issue 4).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any, overload

from psycopg import Connection
from psycopg.rows import dict_row, tuple_row

from incident_loop.db import savepoint
from incident_loop.grouping.matcher import (
    MAX_CANDIDATES,
    MatchDecision,
    PatternCandidate,
    decision_arg,
    exact_confidence,
    merge,
)
from incident_loop.stores.read_ahead import MISSING, ReadAhead

# The pattern as it is now (its template) comes with the hit: the confidence of an exact hit depends
# on whether the pattern has generalised the message's words since.
BY_SIGNATURE_SQL = (
    "SELECT s.pattern_id, p.template FROM pattern_signatures s"
    " JOIN failure_patterns p ON p.tenant_id = s.tenant_id AND p.id = s.pattern_id"
    " WHERE s.tenant_id = %(t)s AND s.signature = %(s)s"
)
# A batch's read-ahead: the patterns its messages hit, locked (as the count's UPDATE would lock them) in
# the order of their ids. Locked one by one as each message is counted, two batches hitting the same
# busy patterns in opposite orders deadlocked; in one order, the second waits for the first to commit.
BY_SIGNATURES_SQL = (
    "SELECT s.signature, s.pattern_id, p.template FROM pattern_signatures s"
    " JOIN failure_patterns p ON p.tenant_id = s.tenant_id AND p.id = s.pattern_id"
    " WHERE s.tenant_id = %(t)s AND s.signature = ANY(%(s)s) ORDER BY p.id FOR NO KEY UPDATE OF p"
)
# Before the candidates of a key are read, the transaction takes the key's lock (held to its end): a worker about
# to create a pattern under the key has then committed it, or waits until this one has. Without it, two workers each
# given a new sibling ("lease lost by worker alpha" / "... beta") found no candidate and made two patterns.
LOCK_KEY_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%(t)s || chr(31) || %(e)s || chr(31) || %(k)s, 7))"
# A batch's keys, taken before its first message is decided, in the order of their lock ids (the same for
# every worker): taken as the messages come, two batches with the same new keys in reverse deadlocked.
LOCK_KEYS_SQL = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(%(t)s || chr(31) || e || chr(31) || k, 7)"
    " AS h FROM unnest(%(e)s::text[], %(k)s::text[]) AS u(e, k) ORDER BY 1) ordered"
)
SHARE_KEYS_SQL = LOCK_KEYS_SQL.replace("_lock(h)", "_lock_shared(h)")
# Oldest first, as the index hands them over: no sort, however many patterns share the key.
CANDIDATES_SQL = (
    "SELECT id, template, occurrence_count FROM failure_patterns"
    " WHERE tenant_id = %(t)s AND error_type = %(e)s AND candidate_key = %(k)s AND merged_into IS NULL"
    " ORDER BY first_seen_at, id LIMIT %(n)s"
)


def new_pattern_id() -> str:
    return f"pat_{secrets.token_hex(8)}"


class PostgresPatternIndex:
    """The PatternIndex of Bridge 1 on PostgreSQL (same semantics as MemoryPatternIndex)."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None:
        with self._conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(BY_SIGNATURE_SQL, {"t": tenant_id, "s": signature}).fetchone()
        return None if row is None else PatternCandidate(str(row[0]), str(row[1]))

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> list[PatternCandidate]:
        params = {"t": tenant_id, "e": error_type, "k": candidate_key, "n": MAX_CANDIDATES}
        with self._conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(LOCK_KEY_SQL, params)  # its own statement: the read's snapshot must follow the lock
            rows = cur.execute(CANDIDATES_SQL, params).fetchall()
        return [PatternCandidate(str(pid), str(tpl), count=int(n)) for pid, tpl, n in rows]


def lock_keys(conn: Connection[Any], tenant_id: str, keys: Collection[tuple[str, str]], shared: bool = False) -> None:
    """LOCK_KEYS_SQL for these (error type, candidate key) pairs; `shared`: held by many at once, never with Bridge 1
    (whose batches, merges among them, hold their keys alone): what Bridge 3 holds while it makes their policies."""
    if pairs := sorted(set(keys)):
        conn.execute(SHARE_KEYS_SQL if shared else LOCK_KEYS_SQL, {"t": tenant_id, "e": [e for e, _ in pairs],
                                                                   "k": [k for _, k in pairs]})


class PostgresPatternStore(PostgresPatternIndex):
    """PatternStore on the unit of work's connection: the index Bridge 1 decides on, and what it records.

    by_signature() and get() answer from what by_signatures() and get_many() read ahead in the same transaction, kept
    current by what record_match() writes: a new pattern or alias is remembered, a generalised pattern forgotten.
    """

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None) -> None:
        super().__init__(conn)
        self._ahead = read_ahead or ReadAhead()

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None:
        hit = self._ahead.get("signature", (tenant_id, signature))
        return super().by_signature(tenant_id, signature) if hit is MISSING else hit

    def lock_keys(self, tenant_id: str, keys: Collection[tuple[str, str]], shared: bool = False) -> None:
        lock_keys(self._conn, tenant_id, keys, shared)

    def by_signatures(self, tenant_id: str, signatures: Collection[str]) -> dict[str, PatternCandidate]:
        with self._conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(BY_SIGNATURES_SQL, {"t": tenant_id, "s": list(signatures)}).fetchall()
        found = {str(sig): PatternCandidate(str(pid), str(tpl)) for sig, pid, tpl in rows}
        self._ahead.put_all("signature", tenant_id, signatures, found)
        return found

    def get(self, tenant_id: str, pattern_id: str) -> dict[str, Any] | None:
        row = self._ahead.get("pattern", (tenant_id, pattern_id))
        if row is MISSING:
            return get_pattern(self._conn, tenant_id, pattern_id)
        return None if row is None else dict(row)

    def get_many(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT * FROM failure_patterns WHERE tenant_id = %(t)s AND id = ANY(%(ids)s)",
                               {"t": tenant_id, "ids": list(pattern_ids)}).fetchall()
        found = {r["id"]: r for r in rows}
        self._ahead.put_all("pattern", tenant_id, pattern_ids, found)
        return {k: dict(v) for k, v in found.items()}

    def record_match(self, tenant_id: str, incident_id: str, error_type: str,
                     decision: MatchDecision) -> tuple[str, int, bool]:
        recorded = record_match(self._conn, tenant_id, incident_id, error_type, decision)
        pattern_id, _, is_new = recorded
        signature = (tenant_id, decision.signature)
        if (decision.match_type == "new" and is_new) or (decision.match_type == "exact" and decision.new_alias):
            # The signature now names the pattern, whose template is this message's.
            self._ahead.put("signature", signature, PatternCandidate(pattern_id, decision.template))
        elif not _plain_hit(decision):  # generalised, or created by another worker first: template unknown
            changed = {pattern_id, *decision.absorbed}  # an absorbed sibling's signatures point elsewhere now
            self._ahead.drop_where("signature", lambda hit: hit is not None and hit.pattern_id in changed)
            self._ahead.drop("signature", signature)
        for changed_id in (pattern_id, *decision.absorbed):
            self._ahead.drop("pattern", (tenant_id, changed_id))
        return recorded


def _plain_hit(decision: MatchDecision) -> bool:
    """An exact hit that only counts: no pattern to create, no template to merge, no alias to add."""
    return decision.match_type == "exact" and decision.pattern_id is not None and not decision.new_alias


# A plain exact hit counted in one statement: the occurrence once, and the count with it. No row back means a
# redelivery: record_match then reads what it was counted as.
COUNT_HIT_SQL = (
    "WITH o AS (INSERT INTO pattern_occurrences (pattern_id, incident_id, match_type, confidence)"
    " VALUES (%(p)s, %(i)s, %(m)s, %(c)s) ON CONFLICT DO NOTHING RETURNING pattern_id)"
    " UPDATE failure_patterns p SET occurrence_count = occurrence_count + 1, last_seen_at = now() FROM o"
    " WHERE p.tenant_id = %(t)s AND p.id = o.pattern_id RETURNING p.occurrence_count, p.first_incident_id"
)


def get_pattern(conn: Connection[Any], tenant_id: str, pattern_id: str) -> dict[str, Any] | None:
    """The tenant's failure_patterns row as a dict, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM failure_patterns WHERE tenant_id = %(t)s AND id = %(id)s",
                           {"t": tenant_id, "id": pattern_id}).fetchone()


@overload
def record_match(conn: Connection[Any], tenant_id: str, incident_id: str, decision: MatchDecision, /
                 ) -> tuple[str, int, bool]: ...


@overload
def record_match(conn: Connection[Any], tenant_id: str, incident_id: str, error_type: str,
                 decision: MatchDecision, /) -> tuple[str, int, bool]: ...


def record_match(conn: Connection[Any], tenant_id: str, incident_id: str, *args: Any) -> tuple[str, int, bool]:
    """Count the incident against its pattern, creating or generalising the pattern as decided.

    Returns (pattern_id, occurrence_count, is_new_pattern), where is_new_pattern says the pattern
    was created for this incident. One transaction (a savepoint inside the caller's): the
    occurrence row is inserted ON CONFLICT DO NOTHING and the count incremented only when it was,
    so a redelivered incident counts once (and gets the same answer) and concurrent workers keep
    the count exact. Two workers creating the same new signature end with one pattern.
    Also accepts the older (conn, tenant_id, incident_id, error_type, decision).
    """
    decision = decision_arg(args)
    if _plain_hit(decision):  # the common case: one statement, atomic by itself (no savepoint)
        with conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(COUNT_HIT_SQL, {"p": decision.pattern_id, "i": incident_id, "m": decision.match_type,
                                              "c": decision.confidence, "t": tenant_id}).fetchone()
            if row is not None:
                return str(decision.pattern_id), int(row[0]), row[1] == incident_id
    with savepoint(conn), conn.cursor(row_factory=tuple_row) as cur:
        done = _recorded(cur, tenant_id, incident_id)
        if done is not None:
            return done
        pattern_id, match_type, confidence = decision.pattern_id, decision.match_type, decision.confidence
        if pattern_id is None:
            pattern_id, created = _create(cur, tenant_id, incident_id, decision)
            if not created:  # another worker recorded the signature first: this is an exact hit on it
                match_type, confidence = "exact", exact_confidence(decision.template)
        else:
            if match_type == "fuzzy":
                _generalise(cur, tenant_id, pattern_id, decision)
            if decision.absorbed:
                _absorb(cur, tenant_id, pattern_id, decision.absorbed)
            if decision.new_alias:
                _alias(cur, tenant_id, decision.signature, pattern_id)
        cur.execute(
            "INSERT INTO pattern_occurrences (pattern_id, incident_id, match_type, confidence)"
            " VALUES (%(p)s, %(i)s, %(m)s, %(c)s) ON CONFLICT DO NOTHING RETURNING pattern_id",
            {"p": pattern_id, "i": incident_id, "m": match_type, "c": confidence},
        )
        if cur.fetchone() is None:  # a concurrent delivery of the same incident got there first
            done = _recorded(cur, tenant_id, incident_id)
            assert done is not None
            return done
        row = cur.execute(
            "UPDATE failure_patterns SET occurrence_count = occurrence_count + 1, last_seen_at = now()"
            " WHERE tenant_id = %(t)s AND id = %(id)s RETURNING occurrence_count, first_incident_id",
            {"t": tenant_id, "id": pattern_id},
        ).fetchone()
        assert row is not None
        return pattern_id, int(row[0]), row[1] == incident_id


def _recorded(cur: Any, tenant_id: str, incident_id: str) -> tuple[str, int, bool] | None:
    row = cur.execute(
        "SELECT p.id, p.occurrence_count, p.first_incident_id FROM pattern_occurrences o"
        " JOIN failure_patterns p ON p.id = o.pattern_id WHERE o.incident_id = %(i)s AND p.tenant_id = %(t)s",
        {"i": incident_id, "t": tenant_id},
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), row[2] == incident_id)


def _create(cur: Any, tenant_id: str, incident_id: str, decision: MatchDecision) -> tuple[str, bool]:
    """(pattern id, created) for a new signature. The alias is claimed first, so when workers race
    to create the pattern, one creates it and the others join it (their alias insert waits for it)."""
    pattern_id = new_pattern_id()
    if not _alias(cur, tenant_id, decision.signature, pattern_id):
        row = cur.execute(BY_SIGNATURE_SQL, {"t": tenant_id, "s": decision.signature}).fetchone()
        assert row is not None  # the alias insert waited for the winner's commit
        return str(row[0]), False
    cur.execute(
        "INSERT INTO failure_patterns (id, tenant_id, pattern_type, error_type, signature, template,"
        " candidate_key, category, first_incident_id) VALUES (%(id)s, %(t)s, %(ptype)s, %(e)s, %(s)s,"
        " %(tpl)s, %(k)s, %(cat)s, %(inc)s)",
        {"id": pattern_id, "t": tenant_id, "ptype": decision.pattern_type, "e": decision.error_type,
         "s": decision.signature, "tpl": decision.template, "k": decision.candidate_key,
         "cat": decision.category, "inc": incident_id},
    )
    return pattern_id, True


def _alias(cur: Any, tenant_id: str, signature: str, pattern_id: str) -> bool:
    """Point the signature at the pattern unless it already points somewhere; True if it was new."""
    cur.execute(
        "INSERT INTO pattern_signatures (tenant_id, signature, pattern_id) VALUES (%(t)s, %(s)s, %(p)s)"
        " ON CONFLICT (tenant_id, signature) DO NOTHING RETURNING pattern_id",
        {"t": tenant_id, "s": signature, "p": pattern_id},
    )
    return cur.fetchone() is not None


# The decision's siblings merged into the pattern (as MemoryPatternIndex applies it): their signatures point at it,
# their members count for it, and they (and those merged into them before: one hop) name it in merged_into, leaving
# the candidate probe. Under the candidate key's lock, which every writer of these rows holds first.
ABSORB_SQL = (
    "WITH gone AS (UPDATE failure_patterns SET merged_into = %(p)s WHERE tenant_id = %(t)s AND id = ANY(%(ids)s)"
    " AND id <> %(p)s AND merged_into IS NULL RETURNING id, occurrence_count),"
    " moved AS (UPDATE pattern_signatures SET pattern_id = %(p)s WHERE tenant_id = %(t)s"
    " AND pattern_id IN (SELECT id FROM gone) RETURNING 1),"
    " chained AS (UPDATE failure_patterns SET merged_into = %(p)s WHERE tenant_id = %(t)s"
    " AND merged_into IN (SELECT id FROM gone) RETURNING 1)"
    " UPDATE failure_patterns SET occurrence_count = occurrence_count"
    " + (SELECT coalesce(sum(occurrence_count), 0) FROM gone) WHERE tenant_id = %(t)s AND id = %(p)s"
)


def _absorb(cur: Any, tenant_id: str, pattern_id: str, absorbed: tuple[str, ...]) -> None:
    cur.execute(ABSORB_SQL, {"p": pattern_id, "t": tenant_id, "ids": list(absorbed)})


def _generalise(cur: Any, tenant_id: str, pattern_id: str, decision: MatchDecision) -> None:
    """Merge decision.cover (the message, and siblings it absorbs) into the template as it is now (or since)."""
    row = cur.execute(
        "SELECT template FROM failure_patterns WHERE tenant_id = %(t)s AND id = %(id)s FOR UPDATE",
        {"t": tenant_id, "id": pattern_id},
    ).fetchone()
    if row is None:
        raise LookupError(f"pattern {pattern_id} does not exist")
    current = str(row[0]).split(" ")
    merged = " ".join(merge(decision.cover, current)) if len(current) == len(decision.cover) else row[0]
    if merged != row[0]:
        cur.execute("UPDATE failure_patterns SET template = %(tpl)s WHERE tenant_id = %(t)s AND id = %(id)s",
                    {"tpl": merged, "t": tenant_id, "id": pattern_id})
