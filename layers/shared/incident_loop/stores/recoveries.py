"""recovery_candidates: the recovery each incident was answered with (one per incident)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from incident_loop.schemas.loop.confidence import ConfidenceBand
from incident_loop.schemas.loop.results import RecoverySuggestion
from incident_loop.stores.read_ahead import MISSING, ReadAhead


def to_model(row: dict[str, Any]) -> RecoverySuggestion:
    return RecoverySuggestion(
        recovery_id=row["id"],
        incident_id=row["source_incident_id"],
        pattern_id=row["source_pattern_id"],
        suggestion_type=row["suggestion_type"],
        confidence=row["confidence"],
        confidence_band=ConfidenceBand(row["confidence_band"]),
        action_type=row["action_type"],
        action_params=row["action_params"],
        status=row["status"],
        auto_applicable=row["auto_applicable"],
        requires_confirmation=row["requires_confirmation"],
        confirmations_received=row["confirmations_received"],
        rejection_reason=row["rejection_reason"],
    )


def insert_recovery(
    conn: Connection[Any], tenant_id: str, suggestion: RecoverySuggestion, text: str
) -> RecoverySuggestion:
    """Store the incident's recovery unless it has one; returns the stored one (one statement, as a rule)."""
    row = conn.execute(
        "WITH ins AS (INSERT INTO recovery_candidates (id, tenant_id, suggestion, confidence, source_incident_id,"
        " source_pattern_id, suggestion_type, confidence_band, requires_confirmation,"
        " confirmations_received, action_type, action_params, auto_applicable, status, rejection_reason)"
        " VALUES (%(id)s, %(tenant)s, %(text)s, %(confidence)s, %(incident)s, %(pattern)s, %(stype)s,"
        " %(band)s, %(requires)s, %(received)s, %(action)s, %(params)s, %(auto)s, %(status)s, %(reason)s)"
        " ON CONFLICT (source_incident_id) DO NOTHING RETURNING *)"
        " SELECT * FROM ins UNION ALL SELECT * FROM recovery_candidates WHERE tenant_id = %(tenant)s"
        " AND source_incident_id = %(incident)s AND NOT EXISTS (SELECT 1 FROM ins)",
        {
            "id": suggestion.recovery_id,
            "tenant": tenant_id,
            "text": text,
            "confidence": suggestion.confidence,
            "incident": suggestion.incident_id,
            "pattern": suggestion.pattern_id,
            "stype": suggestion.suggestion_type,
            "band": suggestion.confidence_band.value,
            "requires": suggestion.requires_confirmation,
            "received": suggestion.confirmations_received,
            "action": suggestion.action_type,
            "params": Jsonb(suggestion.action_params),
            "auto": suggestion.auto_applicable,
            "status": suggestion.status,
            "reason": suggestion.rejection_reason,
        },
    ).fetchone()
    # None: another transaction stored it after this statement's snapshot; a new statement sees it.
    stored = to_model(row) if row is not None else recovery_for_incident(conn, tenant_id, suggestion.incident_id)
    assert stored is not None
    return stored


def recovery_for_incident(conn: Connection[Any], tenant_id: str, incident_id: str) -> RecoverySuggestion | None:
    row = conn.execute(
        "SELECT * FROM recovery_candidates WHERE tenant_id = %(tenant)s AND source_incident_id = %(id)s",
        {"tenant": tenant_id, "id": incident_id},
    ).fetchone()
    return None if row is None else to_model(row)


def get_recovery(conn: Connection[Any], tenant_id: str, recovery_id: str) -> RecoverySuggestion | None:
    row = conn.execute(
        "SELECT * FROM recovery_candidates WHERE tenant_id = %(tenant)s AND id = %(id)s FOR UPDATE",
        {"tenant": tenant_id, "id": recovery_id},
    ).fetchone()
    return None if row is None else to_model(row)


def save_recovery(conn: Connection[Any], tenant_id: str, suggestion: RecoverySuggestion) -> None:
    """Persist a recovery's decision: status, confirmations, rejection, (modified) action params."""
    conn.execute(
        "UPDATE recovery_candidates SET status = %(status)s, confirmations_received = %(received)s,"
        " rejection_reason = %(reason)s, action_params = %(params)s, updated_at = now()"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s",
        {
            "status": suggestion.status,
            "received": suggestion.confirmations_received,
            "reason": suggestion.rejection_reason,
            "params": Jsonb(suggestion.action_params),
            "tenant": tenant_id,
            "id": suggestion.recovery_id,
        },
    )


class PostgresRecoveryStore:
    """RecoveryStore on the unit of work's connection; for_incident() answers from for_incidents()."""

    def __init__(self, conn: Connection[Any], read_ahead: ReadAhead | None = None) -> None:
        self._conn = conn
        self._ahead = read_ahead or ReadAhead()

    def insert(self, tenant_id: str, suggestion: RecoverySuggestion, text: str) -> RecoverySuggestion:
        stored = insert_recovery(self._conn, tenant_id, suggestion, text)
        self._ahead.drop("recovery_for_incident", (tenant_id, suggestion.incident_id))
        return stored

    def for_incident(self, tenant_id: str, incident_id: str) -> RecoverySuggestion | None:
        found = self._ahead.get("recovery_for_incident", (tenant_id, incident_id))
        if found is MISSING:
            return recovery_for_incident(self._conn, tenant_id, incident_id)
        return None if found is None else found.model_copy(deep=True)

    def for_incidents(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, RecoverySuggestion]:
        rows = self._conn.execute(
            "SELECT * FROM recovery_candidates WHERE tenant_id = %(tenant)s AND source_incident_id = ANY(%(ids)s)",
            {"tenant": tenant_id, "ids": list(incident_ids)},
        ).fetchall()
        found = {r["source_incident_id"]: to_model(r) for r in rows}
        self._ahead.put_all("recovery_for_incident", tenant_id, incident_ids, found)
        return {k: v.model_copy(deep=True) for k, v in found.items()}

    def get(self, tenant_id: str, recovery_id: str) -> RecoverySuggestion | None:
        return get_recovery(self._conn, tenant_id, recovery_id)

    def save(self, tenant_id: str, suggestion: RecoverySuggestion) -> None:
        save_recovery(self._conn, tenant_id, suggestion)
        self._ahead.drop("recovery_for_incident", (tenant_id, suggestion.incident_id))

    def last_decision(self, tenant_id: str, pattern_id: str, action_type: str) -> str | None:
        # A person's decision: a rejection, or a recovery a person confirmed (an auto-applied one has none).
        row = self._conn.execute(
            "SELECT status FROM recovery_candidates WHERE tenant_id = %(tenant)s AND source_pattern_id = %(pattern)s"
            " AND action_type = %(action)s AND (status = 'rejected' OR confirmations_received > 0)"
            " ORDER BY updated_at DESC, id DESC LIMIT 1",
            {"tenant": tenant_id, "pattern": pattern_id, "action": action_type},
        ).fetchone()
        if row is None:
            return None
        return "rejected" if row["status"] == "rejected" else "approved"
