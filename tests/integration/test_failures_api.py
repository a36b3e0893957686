"""The recovery-tracking API (/failures) on a real PostgreSQL: filters, pagination, tenancy, indexes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from incident_loop.db import get_connection, set_tenant, transaction
from incident_loop.schemas.failures import FailureRecord
from incident_loop.stores.failures import insert

NOW = datetime.now(UTC)


def _failure(tenant: str, n: int, **extra: Any) -> FailureRecord:
    base = {"id": uuid.uuid4(), "run_id": f"run-{n % 4}", "tenant_id": tenant, "error_code": f"E{n % 3}",
            "error_message": f"failure {n}", "category": ["TIMEOUT", "NETWORK"][n % 2],
            "severity": ["low", "high"][n % 2], "catalog_entry_id": f"E{n % 3}@v1" if n % 5 else None,
            "match_type": "exact" if n % 5 else "miss", "created_at": NOW - timedelta(minutes=n)}
    return FailureRecord(**{**base, **extra})


@pytest.fixture
def seeded(local_app: Any, tenant: str) -> list[FailureRecord]:
    rows = [_failure(tenant, n) for n in range(30)]
    rows.append(_failure(tenant, 99, created_at=NOW - timedelta(hours=30)))  # outside the default window
    with transaction(tenant_id=tenant) as conn:
        for row in rows:
            insert(conn, row)
    with transaction(tenant_id="other-tenant") as conn:
        insert(conn, _failure("other-tenant", 1))
    return rows


def get(app: Any, tenant: str, path: str, **query: Any) -> Any:
    status, body = app.request("GET", path, tenant, query={k: str(v) for k, v in query.items()})
    assert status == 200, body
    return body


def test_list_filters_by_each_of_the_seed_filters(local_app: Any, tenant: str, seeded: list[FailureRecord]) -> None:
    assert get(local_app, tenant, "/failures")["count"] == 30
    assert get(local_app, tenant, "/failures", since_hours=48)["count"] == 31
    assert {f["run_id"] for f in get(local_app, tenant, "/failures", run_id="run-1")["failures"]} == {"run-1"}
    assert get(local_app, tenant, "/failures", run_id="run-1")["count"] == 8
    assert get(local_app, tenant, "/failures", error_code="E2")["count"] == 10
    assert get(local_app, tenant, "/failures", category="NETWORK")["count"] == 15


def test_pagination_walks_newest_first_without_overlap(local_app: Any, tenant: str,
                                                        seeded: list[FailureRecord]) -> None:
    pages = [get(local_app, tenant, "/failures", limit=7, offset=o)["failures"] for o in range(0, 35, 7)]
    ids = [f["id"] for page in pages for f in page]
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert len(set(ids)) == 30
    stamps = [f["created_at"] for page in pages for f in page]
    assert stamps == sorted(stamps, reverse=True)


def test_recovery_patch_sets_audit_columns_and_moves_status(local_app: Any, tenant: str,
                                                            seeded: list[FailureRecord]) -> None:
    target = str(seeded[0].id)
    assert get(local_app, tenant, "/failures", status="unrecovered")["count"] == 30
    status, row = local_app.request("PATCH", f"/failures/{target}/recovery", tenant,
                                    {"succeeded": True, "by": "oncall", "notes": "restarted the worker"})
    assert status == 200
    assert (row["recovery_attempted"], row["recovery_succeeded"], row["recovered_by"]) == (True, True, "oncall")
    assert row["recovered_at"] is not None and row["recovery_notes"] == "restarted the worker"
    assert get(local_app, tenant, "/failures", status="recovered")["count"] == 1
    assert get(local_app, tenant, "/failures/unrecovered")["count"] == 29
    assert get(local_app, tenant, f"/failures/{target}")["recovered_by"] == "oncall"


def test_stats_count_by_category_severity_code_and_match_rate(local_app: Any, tenant: str,
                                                              seeded: list[FailureRecord]) -> None:
    stats = get(local_app, tenant, "/failures/stats")
    assert stats["total"] == 30
    assert stats["by_category"] == {"TIMEOUT": 15, "NETWORK": 15}
    assert stats["by_severity"] == {"low": 15, "high": 15}
    assert stats["by_error_code"] == {"E0": 10, "E1": 10, "E2": 10}
    assert stats["match_rate"] == 0.8  # every fifth is a miss


def test_other_tenants_see_nothing(local_app: Any, tenant: str, seeded: list[FailureRecord]) -> None:
    target = str(seeded[0].id)
    assert get(local_app, "someone-else", "/failures")["count"] == 0
    assert get(local_app, "someone-else", "/failures/stats")["total"] == 0
    assert local_app.request("GET", f"/failures/{target}", "someone-else")[0] == 404
    assert local_app.request("PATCH", f"/failures/{target}/recovery", "someone-else",
                             {"succeeded": True, "by": "x"})[0] == 404


def test_bad_filters_are_422(local_app: Any, tenant: str) -> None:
    assert local_app.request("GET", "/failures", tenant, query={"status": "maybe"})[0] == 422
    assert local_app.request("GET", "/failures", tenant, query={"limit": "0"})[0] == 422
    assert local_app.request("GET", "/failures/not-a-uuid", tenant)[0] == 422


def test_list_stats_and_unrecovered_queries_use_the_seed_indexes(loop_env: str, admin_conn: Any) -> None:
    conn = get_connection()
    tenant = f"explain-{uuid.uuid4().hex[:6]}"
    with admin_conn.transaction():  # 200 tenants at once, and ANALYZE: the owner's work
        admin_conn.execute(
            "INSERT INTO failure_matches (id, run_id, tenant_id, error_code, category, severity, catalog_entry_id,"
            " recovery_succeeded, created_at) SELECT gen_random_uuid(), 'run-' || (g % 5000),"
            " 'tenant-' || (g % 200), 'E' || (g % 40), 'C' || (g % 8), 'high', NULL, g % 3 = 0,"
            " now() - make_interval(mins => g % 20000) FROM generate_series(1, 100000) g")
        admin_conn.execute("ANALYZE failure_matches")
    set_tenant(conn, tenant)  # the functions' role, under row-level security
    from incident_loop.stores import failures as store

    plans = {}
    for name, call in {
        "list": lambda: store.list_failures(conn, tenant, run_id="run-7"),
        "stats": lambda: store.stats(conn, tenant),
        "unrecovered": lambda: store.unrecovered(conn, tenant),
    }.items():
        captured: list[str] = []
        original = conn.execute

        def explain(query: Any, params: Any = None, _captured: list[str] = captured, _run: Any = original) -> Any:
            _captured.extend(r["QUERY PLAN"] for r in _run("EXPLAIN " + query, params).fetchall())
            return _run(query, params)

        conn.execute = explain  # type: ignore[method-assign]
        try:
            call()
        finally:
            conn.execute = original  # type: ignore[method-assign]
        plans[name] = "\n".join(captured)
    for name, plan in plans.items():
        assert "Seq Scan on failure_matches" not in plan, f"{name}:\n{plan}"
        assert "idx_fm_" in plan, f"{name}:\n{plan}"
