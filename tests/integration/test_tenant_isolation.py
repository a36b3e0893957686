"""Tenant isolation in PostgreSQL: row-level security on every tenant table, enforced on the functions' role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from incident_loop.db import transaction
from incident_loop.failures.retention import purge_failures
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.failures import FailureRecord
from incident_loop.stores.failures import insert

# Tables that hold no tenant's data, so no row-level security: a new table belongs here or gets a policy.
GLOBAL_TABLES = {"breaker_history", "costsim_canary_reports", "costsim_incidents", "error_catalog",
                 "schema_migrations"}
INCIDENT = {"agent_id": "agent-1", "error_type": "SkillTimeoutError", "skill_id": "web_search", "severity": "high",
            "error_message": "Skill web_search timed out after 30s"}


@pytest.fixture
def fn_conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the functions' role, no tenant set."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        yield conn


def _incident(conn: psycopg.Connection[Any], tenant: str) -> str:
    incident_id = f"inc_{uuid.uuid4().hex[:16]}"
    conn.execute(
        "INSERT INTO incidents (id, tenant_id, incident_key, agent_id, run_id, error_type, error_message, severity)"
        " VALUES (%(id)s, %(t)s, %(id)s, 'agent', 'run', 'E', 'm', 'low')", {"id": incident_id, "t": tenant})
    return incident_id


def _other_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def test_every_table_with_a_tenant_id_has_row_level_security_and_a_tenant_policy(admin_conn: Any) -> None:
    tables = admin_conn.execute(
        "SELECT c.relname, c.relrowsecurity,"
        " (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = c.relname"
        "  AND p.qual LIKE '%%app.tenant_id%%' AND p.with_check LIKE '%%app.tenant_id%%') AS policies"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    ).fetchall()
    assert len(tables) >= 13
    assert [r["relname"] for r in tables if not r["relrowsecurity"] or r["policies"] == 0] == []


def test_tables_without_row_level_security_are_only_the_global_ones(admin_conn: Any) -> None:
    open_tables = {r["relname"] for r in admin_conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
        " AND NOT relrowsecurity").fetchall()}
    assert open_tables == GLOBAL_TABLES


def test_the_function_role_is_not_an_owner_and_cannot_bypass_rls(fn_conn: Any) -> None:
    me = fn_conn.execute(
        "SELECT current_user AS name, rolsuper, rolbypassrls, pg_has_role(current_user, 'incident_loop_app', 'MEMBER')"
        " AS app FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (me["name"], me["rolsuper"], me["rolbypassrls"], me["app"]) == ("incident_loop_fn", False, False, True)
    app = fn_conn.execute("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles"
                          " WHERE rolname = 'incident_loop_app'").fetchone()
    assert (app["rolsuper"], app["rolbypassrls"], app["rolcanlogin"]) == (False, False, False)
    owned = fn_conn.execute(
        "SELECT count(*) AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND pg_has_role(current_user, relowner, 'MEMBER')").fetchone()
    assert owned["n"] == 0


def test_a_query_without_its_tenant_filter_sees_none_of_another_tenants_rows(
    fn_conn: Any, admin_conn: Any, tenant: str
) -> None:
    # Given tenant A's incident and failure, written under A's scope
    with fn_conn.transaction():
        fn_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        incident_id = _incident(fn_conn, tenant)
        insert(fn_conn, FailureRecord(id=uuid.uuid4(), run_id="r", tenant_id=tenant, error_code="E"))
    assert admin_conn.execute("SELECT count(*) AS n FROM incidents WHERE id = %s", (incident_id,)).fetchone()["n"] == 1
    # When tenant B forgets its tenant filter
    with fn_conn.transaction():
        fn_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (_other_tenant(),))
        incidents = fn_conn.execute("SELECT * FROM incidents").fetchall()
        failures = fn_conn.execute("SELECT * FROM failure_matches").fetchall()
        updated = fn_conn.execute("UPDATE incidents SET status = 'hijacked' WHERE id = %s", (incident_id,)).rowcount
    # Then none of A's rows are there, and A's incident is untouched
    assert [r for r in incidents if r["tenant_id"] == tenant] == [] and incidents == []
    assert failures == [] and updated == 0
    status = admin_conn.execute("SELECT status FROM incidents WHERE id = %s", (incident_id,)).fetchone()
    assert status["status"] == "open"


def test_with_no_tenant_set_no_rows_are_visible_and_inserts_are_refused(
    fn_conn: Any, db_url: str, tenant: str
) -> None:
    with fn_conn.transaction():
        fn_conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        _incident(fn_conn, tenant)
    # This session had a tenant (now reset to ''); a new session never had one. Neither sees a row.
    with psycopg.connect(db_url, row_factory=dict_row) as fresh:
        for conn in (fn_conn, fresh):
            assert conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"] == 0
            conn.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                _incident(conn, tenant)
            conn.rollback()


def test_a_transaction_scope_ends_with_its_transaction(loop_env: str, tenant: str) -> None:
    with transaction(tenant_id=tenant) as conn:
        incident_id = _incident(conn, tenant)
        assert conn.execute("SELECT count(*) AS n FROM incidents WHERE id = %s", (incident_id,)).fetchone()["n"] == 1
    with transaction(tenant_id=None) as conn:
        assert conn.execute("SELECT count(*) AS n FROM incidents WHERE id = %s", (incident_id,)).fetchone()["n"] == 0
    with transaction(tenant_id=_other_tenant()) as conn:
        assert conn.execute("SELECT count(*) AS n FROM incidents WHERE id = %s", (incident_id,)).fetchone()["n"] == 0


def test_an_envelope_naming_another_tenants_incident_is_dead_lettered_and_changes_nothing(
    local_app: Any, tenant: str, admin_conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given tenant A's loop, complete
    status, accepted = local_app.request("POST", "/incidents", tenant, {**INCIDENT, "run_id": "run-1"})
    assert status == 202, accepted
    incident_id = accepted["incident_id"]
    local_app.drain()
    for cp in local_app.request("GET", "/checkpoints", tenant)[1]["checkpoints"]:
        local_app.request("POST", f"/checkpoints/{cp['checkpoint_id']}/resolve", tenant,
                          {"resolution": "approve", "resolved_by": "op"})
    local_app.drain()
    loop = local_app.request("GET", f"/loops/{incident_id}", tenant)[1]
    assert loop["is_complete"] is True
    tables = ("incidents", "loop_events", "loop_traces", "failure_patterns", "recovery_candidates", "policy_rules",
              "routing_adjustments", "human_checkpoints")

    def snapshot() -> dict[str, Any]:
        return {t: admin_conn.execute(f"SELECT to_jsonb(x) AS row FROM {t} x WHERE tenant_id = %s"
                                      " ORDER BY to_jsonb(x)::text", (tenant,)).fetchall() for t in tables}

    before = snapshot()
    # When tenant B's envelopes name A's incident (and A's pattern, recovery and policy), on every bridge
    intruder = _other_tenant()
    forged = [
        ("PatternQueue", "pattern_matched", {}),
        ("RecoveryQueue", "recovery_suggested", {"pattern_id": loop["pattern_match_result"]["pattern_id"],
                                                 "occurrence_count": 1}),
        ("PolicyQueue", "policy_generated", {"recovery_id": loop["recovery_suggestion"]["recovery_id"]}),
        ("RoutingQueue", "routing_adjusted", {"policy_id": loop["policy_rule"]["policy_id"]}),
    ]
    for queue, stage, payload in forged:
        envelope = Envelope(incident_id=incident_id, tenant_id=intruder, loop_id=loop["loop_id"], stage=stage,
                            correlation_id=incident_id, payload=payload)
        local_app.send(queue, json.loads(envelope.model_dump_json()))
    local_app.drain()
    # Then each is retried and dead-lettered, and neither tenant's rows change
    for queue, stage, _ in forged:
        [dead] = local_app.dlq_messages(queue)
        assert (json.loads(dead["Body"])["tenant_id"], json.loads(dead["Body"])["stage"]) == (intruder, stage)
    reasons = {r.reason for r in caplog.records if r.getMessage() == "record failed"}  # type: ignore[attr-defined]
    assert reasons and all(reason.startswith("NotReady: ") for reason in reasons), reasons
    assert snapshot() == before
    assert [admin_conn.execute(f"SELECT count(*) AS n FROM {t} WHERE tenant_id = %s", (intruder,)).fetchone()["n"]
            for t in tables] == [0] * len(tables)


def test_tenant_b_simulating_tenant_a_plan_is_recorded_as_new(local_app: Any, tenant: str) -> None:
    plan = {"plan": {"steps": [{"skill": f"isolation-{uuid.uuid4().hex[:8]}", "model": "claude-haiku",
                                "tokens_in": 1500, "tokens_out": 300}]}}
    other = _other_tenant()
    answers = [local_app.request("POST", "/costsim/simulate", who, plan)[1] for who in (tenant, tenant, other, other)]
    assert [a["provenance_recorded"] for a in answers] == [True, False, True, False]
    assert len({a["input_hash"] for a in answers}) == 1
    for who in (tenant, other):
        with transaction(tenant_id=who) as conn:
            rows = conn.execute("SELECT tenant_id FROM costsim_provenance WHERE input_hash = %s",
                                (answers[0]["input_hash"],)).fetchall()
        assert [r["tenant_id"] for r in rows] == [who]


def test_retention_purges_every_tenant_only_through_the_owner_function(loop_env: str, admin_conn: Any) -> None:
    tenants = [_other_tenant(), _other_tenant()]
    old = datetime.now(UTC) - timedelta(days=400)
    for who in tenants:
        with transaction(tenant_id=who) as conn:
            insert(conn, FailureRecord(id=uuid.uuid4(), run_id="r", tenant_id=who, error_code="E", created_at=old))
    with transaction(tenant_id=None) as conn:  # the functions' role itself deletes nothing it cannot see
        assert conn.execute("DELETE FROM failure_matches WHERE tenant_id = ANY(%s)", (tenants,)).rowcount == 0
    assert purge_failures(365)["deleted"] >= 2
    left = admin_conn.execute("SELECT count(*) AS n FROM failure_matches WHERE tenant_id = ANY(%s)", (tenants,))
    assert left.fetchone()["n"] == 0
