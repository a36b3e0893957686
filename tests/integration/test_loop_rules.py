"""The loop's rules through the real functions, in-process moto and a real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from incident_loop.db import transaction

BASE = {
    "agent_id": "agent-1",
    "error_type": "SkillTimeoutError",
    "skill_id": "web_search",
    "severity": "high",
}


def report(app: Any, tenant: str, run_id: str, message: str, **extra: Any) -> str:
    status, body = app.request("POST", "/incidents", tenant, {**BASE, "run_id": run_id, "error_message": message,
                                                               **extra})
    assert status == 202, body
    return str(body["incident_id"])


def status_of(app: Any, tenant: str, incident_id: str) -> dict[str, Any]:
    status, body = app.request("GET", f"/loops/{incident_id}", tenant)
    assert status == 200, body
    return dict(body)


def count(table: str, tenant: str) -> int:
    with transaction(tenant_id=tenant) as conn:
        row = conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %(t)s", {"t": tenant})
        return int(row.fetchone()["n"])


def timeout(n: int) -> str:
    return f"Skill web_search timed out after {n}s calling https://api.example.com/v1/q?id={n * 7}"


def test_bad_input_is_422_with_field_and_reason_and_nothing_stored(local_app: Any, tenant: str) -> None:
    status, body = local_app.request("POST", "/incidents", tenant, {**BASE, "run_id": "r", "error_message": "",
                                                                     "severity": "apocalyptic"})
    assert status == 422
    fields = {e["field"]: e["reason"] for e in body["errors"]}
    assert any(f.endswith("severity") for f in fields), fields
    assert any(f.endswith("error_message") for f in fields), fields
    assert count("incidents", tenant) == 0


def test_request_without_tenant_is_refused(local_app: Any, load_event: Any) -> None:
    event = load_event("ingest_api_timeout_1.json")
    event["requestContext"]["authorizer"] = {}
    response = local_app.invoke("IngestFunction", event)
    assert response["statusCode"] == 401


def test_same_incident_reported_twice_is_stored_once(local_app: Any, tenant: str) -> None:
    first = report(local_app, tenant, "run-1", timeout(30))
    second = report(local_app, tenant, "run-1", timeout(30))
    assert first == second
    assert count("incidents", tenant) == 1


def test_first_occurrence_waits_for_approval_at_0_7(local_app: Any, tenant: str) -> None:
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    loop = status_of(local_app, tenant, incident)
    assert loop["is_blocked"] is True
    assert loop["current_stage"] == "recovery_suggested"
    assert loop["recovery_suggestion"]["confidence"] == 0.7
    assert loop["recovery_suggestion"]["status"] == "pending"
    assert len(loop["pending_checkpoints"]) == 1
    assert loop["stages_completed"] == ["incident_created", "pattern_matched"]
    assert count("policy_rules", tenant) == 0


def _approve_all(app: Any, tenant: str) -> None:
    _, body = app.request("GET", "/checkpoints", tenant, query={"status": "pending"})
    for cp in body["checkpoints"]:
        status, answer = app.request("POST", f"/checkpoints/{cp['checkpoint_id']}/resolve", tenant,
                                     {"resolution": "approve", "resolved_by": "op"})
        assert status == 200, answer
    app.drain()


def test_confidence_rises_with_occurrences_and_third_auto_applies(local_app: Any, tenant: str) -> None:
    confidences = []
    for n in (1, 2, 3):
        incident = report(local_app, tenant, f"run-{n}", timeout(10 * n))
        local_app.drain()
        _approve_all(local_app, tenant)
        loop = status_of(local_app, tenant, incident)
        confidences.append((loop["recovery_suggestion"]["confidence"], loop["recovery_suggestion"]["auto_applicable"]))
        assert loop["is_complete"] is True
    assert confidences == [(0.7, False), (0.8, False), (0.9, True)]
    assert count("failure_patterns", tenant) == 1
    assert count("policy_rules", tenant) == 1
    assert count("human_checkpoints", tenant) == 2


def test_rejecting_a_checkpoint_ends_the_loop_with_the_reason(local_app: Any, tenant: str) -> None:
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    checkpoint = status_of(local_app, tenant, incident)["pending_checkpoints"][0]
    status, body = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", tenant,
                                     {"resolution": "reject", "resolved_by": "op", "reason": "not transient"})
    assert status == 200, body
    local_app.drain()
    loop = status_of(local_app, tenant, incident)
    assert loop["failure_state"] == "recovery_rejected"
    assert loop["recovery_suggestion"]["rejection_reason"] == "not transient"
    assert loop["is_complete"] is False
    assert count("policy_rules", tenant) == 0
    again = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", tenant,
                              {"resolution": "approve", "resolved_by": "op2"})
    assert again[0] == 409


def test_checkpoint_of_another_tenant_is_not_found(local_app: Any, tenant: str) -> None:
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    checkpoint = status_of(local_app, tenant, incident)["pending_checkpoints"][0]
    status, _ = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", "someone-else",
                                  {"resolution": "approve", "resolved_by": "op"})
    assert status == 404
    assert local_app.request("GET", f"/loops/{incident}", "someone-else")[0] == 404


def _policy_after_three(app: Any, tenant: str) -> dict[str, Any]:
    for n in (1, 2, 3):
        report(app, tenant, f"run-{n}", timeout(10 * n))
        app.drain()
        _approve_all(app, tenant)
    _, body = app.request("GET", "/policies", tenant)
    [policy] = body["policies"]
    return dict(policy)


def test_shadow_policy_counts_evaluations_then_confirmation_activates(local_app: Any, tenant: str) -> None:
    policy = _policy_after_three(local_app, tenant)
    assert policy["mode"] == "shadow"
    # incidents 2 and 3 met the policy generated by incident 1 while it was in shadow mode
    assert (policy["shadow_evaluations"], policy["shadow_would_block"]) == (2, 2)
    status, body = local_app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "op"})
    assert status == 200 and body["activated"] is True
    assert [p["policy_id"] for p in local_app.request("GET", "/policies", tenant, query={"mode": "active"})[1][
        "policies"]] == [policy["policy_id"]]


def test_active_policy_prevents_the_next_incident(local_app: Any, tenant: str) -> None:
    policy = _policy_after_three(local_app, tenant)
    local_app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "op"})
    incident = report(local_app, tenant, "run-4", timeout(99))
    local_app.drain()
    loop = status_of(local_app, tenant, incident)
    assert loop["failure_state"] == "prevented"
    assert loop["is_complete"] is False
    assert count("prevention_records", tenant) == 1
    assert count("recovery_candidates", tenant) == 3  # not re-learned
    grad = local_app.request("GET", "/graduation", tenant)[1]
    assert grad["graduated"] is True
    assert grad["gates"][2]["evidence"]["blocked_incident_id"] == incident


def upstream(name: str) -> str:
    """Siblings that differ in one word (no digit): each joins the first one's pattern fuzzily, at a calibrated
    confidence far under the strong band."""
    return f"Skill web_search failed: upstream {name} returned garbage payload"


def test_a_pattern_seen_three_times_is_not_auto_applied_to_an_incident_that_matched_it_weakly(
        local_app: Any, tenant: str) -> None:
    """Seed 003: only a strong match proceeds without a person. The third occurrence's recovery is 0.9, but the
    incident joined the pattern fuzzily: a person is asked, and told how weak the match was."""
    for n, name in enumerate(("alpha", "bravo"), 1):
        report(local_app, tenant, f"run-{n}", upstream(name), error_type="SkillError")
        local_app.drain()
        _approve_all(local_app, tenant)
    third = report(local_app, tenant, "run-3", upstream("charlie"), error_type="SkillError")
    local_app.drain()

    loop = status_of(local_app, tenant, third)
    match, recovery = loop["pattern_match_result"], loop["recovery_suggestion"]
    assert (match["match_details"]["match_type"], match["confidence_band"]) == ("fuzzy", "novel"), match
    assert match["match_details"]["occurrence_count"] == 3 and recovery["confidence"] == 0.9
    assert (recovery["auto_applicable"], recovery["status"], recovery["requires_confirmation"]) == (False, "pending",
                                                                                                   1)
    _, body = local_app.request("GET", "/checkpoints", tenant, query={"status": "pending"})
    [checkpoint] = body["checkpoints"]
    assert f"matched the pattern at {match['confidence']} confidence only" in checkpoint["description"]


def test_an_active_policy_prevents_only_an_incident_that_matched_its_pattern_strongly(
        local_app: Any, tenant: str) -> None:
    for n, name in enumerate(("alpha", "bravo", "charlie"), 1):
        report(local_app, tenant, f"run-{n}", upstream(name), error_type="SkillError")
        local_app.drain()
        _approve_all(local_app, tenant)
    _, body = local_app.request("GET", "/policies", tenant)
    [policy] = body["policies"]
    local_app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "op"})

    weak = report(local_app, tenant, "run-4", upstream("delta"), error_type="SkillError")
    local_app.drain()
    loop = status_of(local_app, tenant, weak)
    assert loop["pattern_match_result"]["confidence_band"] == "novel"
    assert loop["failure_state"] != "prevented" and count("prevention_records", tenant) == 0
    assert loop["recovery_suggestion"] is not None  # went through the loop, to a person

    strong = report(local_app, tenant, "run-5", upstream("alpha"), error_type="SkillError")  # seen before: exact
    local_app.drain()
    loop = status_of(local_app, tenant, strong)
    assert loop["pattern_match_result"]["confidence_band"] == "strong_match"
    assert loop["failure_state"] == "prevented" and count("prevention_records", tenant) == 1


def test_regrets_past_threshold_demote_an_active_policy(local_app: Any, tenant: str) -> None:
    policy = _policy_after_three(local_app, tenant)
    pid = policy["policy_id"]
    local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})
    answers = [local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op", "reason": "r"})[1]
               for _ in range(3)]
    assert [a["demoted"] for a in answers] == [False, False, True]
    assert answers[-1]["policy"]["mode"] == "shadow"
    assert answers[-1]["policy"]["regret_count"] == 3


def test_a_graduated_tenant_keeps_the_policy_gate_when_regrets_demote_its_policy(local_app: Any, tenant: str) -> None:
    policy = _policy_after_three(local_app, tenant)
    pid = policy["policy_id"]
    local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})
    report(local_app, tenant, "run-4", timeout(99))
    local_app.drain()
    assert local_app.request("GET", "/graduation", tenant)[1]["graduated"] is True
    answers = [local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op", "reason": "r"})[1]
               for _ in range(3)]
    assert answers[-1]["demoted"] is True

    grad = local_app.request("GET", "/graduation", tenant)[1]
    assert grad["graduated"] is True
    assert grad["gates"][1]["evidence"] == {"policy_id": pid}


def test_routing_adjustment_is_bounded_and_rolls_back_on_kpi_regression(local_app: Any, tenant: str) -> None:
    assert local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.9})[0] == 200
    report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    _approve_all(local_app, tenant)
    view = local_app.request("GET", "/routing/agent-1", tenant)[1]
    [adj] = view["adjustments"]
    assert abs(adj["magnitude"]) <= adj["max_delta"]
    assert adj["kpi_baseline"] == 0.9
    assert view["active_adjustments"] == 1
    small = local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.85})[1]
    assert small["rolled_back"] == []
    big = local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.7})[1]
    assert big["rolled_back"] == [adj["adjustment_id"]]
    after = local_app.request("GET", "/routing/agent-1", tenant)[1]
    assert after["active_adjustments"] == 0
    assert after["total_effective_magnitude"] == 0
    assert "rollback threshold" in after["adjustments"][0]["rollback_reason"]


def test_a_failure_recurring_after_its_adjustment_decayed_penalises_the_agent_again(
        local_app: Any, tenant: str, admin_conn: Any) -> None:
    """One adjustment per (policy, agent) never stacks; but one that has decayed to nothing is renewed when the
    failure comes back (it stayed decayed for good, and the loop said routing_adjusted)."""
    for n in (1, 2):
        report(local_app, tenant, f"run-{n}", timeout(30))
        local_app.drain()
        _approve_all(local_app, tenant)
    [adj] = local_app.request("GET", "/routing/agent-1", tenant)[1]["adjustments"]
    admin_conn.execute("UPDATE routing_adjustments SET created_at = created_at - interval '10 days',"
                       " expires_at = expires_at - interval '10 days' WHERE id = %(id)s", {"id": adj["adjustment_id"]})
    assert local_app.request("GET", "/routing/agent-1", tenant)[1]["total_effective_magnitude"] == 0

    again = report(local_app, tenant, "run-3", timeout(30))
    local_app.drain()

    assert status_of(local_app, tenant, again)["is_complete"] is True
    view = local_app.request("GET", "/routing/agent-1", tenant)[1]
    [renewed] = view["adjustments"]
    assert renewed["adjustment_id"] == adj["adjustment_id"] and view["active_adjustments"] == 1
    assert view["total_effective_magnitude"] == pytest.approx(adj["magnitude"], abs=1e-3)


def test_poison_message_goes_to_dlq_with_its_reason_logged_and_neighbours_succeed(
    local_app: Any, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.send("PatternQueue", "this is not an envelope")
    local_app.drain()
    assert status_of(local_app, tenant, incident)["current_stage"] == "recovery_suggested"
    dead = local_app.dlq_messages("PatternQueue")
    assert [m["Body"] for m in dead] == ["this is not an envelope"]
    failures = [r for r in caplog.records if r.getMessage() == "record failed"]
    assert len(failures) == 5  # maxReceiveCount deliveries, each logged with why
    assert all("Invalid JSON" in r.reason for r in failures)  # type: ignore[attr-defined]


def test_interleaved_incidents_of_five_kinds_make_five_exact_patterns(local_app: Any, tenant: str) -> None:
    kinds = [
        ("SkillTimeoutError", "Skill web_search timed out after {n}s"),
        ("RateLimitError", "429 Too Many Requests: retry after {n} seconds"),
        ("SchemaValidationError", "Output failed schema validation: field 'items[{n}].price' is not a number"),
        ("HttpError", "HTTP 503 from https://svc.example.com/api/v2/orders/{n}"),
        ("ToolNotFoundError", "Tool calculator_v{n} not registered for agent"),
    ]
    for i in range(100):
        etype, template = kinds[i % 5]
        local_app.request("POST", "/incidents", tenant, {**BASE, "error_type": etype, "run_id": f"run-{i}",
                                                          "error_message": template.format(n=i + 3)})
    local_app.drain(duplicate=True)
    with transaction(tenant_id=tenant) as conn:
        rows = conn.execute(
            "SELECT error_type, occurrence_count FROM failure_patterns WHERE tenant_id = %(t)s ORDER BY error_type",
            {"t": tenant},
        ).fetchall()
        occurrences = conn.execute(
            "SELECT count(*) AS n FROM pattern_occurrences o JOIN failure_patterns p ON p.id = o.pattern_id"
            " WHERE p.tenant_id = %(t)s", {"t": tenant}).fetchone()
    assert [(r["error_type"], r["occurrence_count"]) for r in rows] == sorted((k, 20) for k, _ in kinds)
    assert occurrences["n"] == 100


def test_redelivery_after_idempotency_records_expire_changes_nothing(local_app: Any, tenant: str) -> None:
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    _approve_all(local_app, tenant)
    before = {t: count(t, tenant) for t in ("loop_events", "recovery_candidates", "policy_rules",
                                            "routing_adjustments", "human_checkpoints")}
    # Forget every idempotency record, then deliver every stage's message again.
    table = local_app.table_names["IdempotencyTable"]
    for item in local_app.dynamodb.scan(TableName=table)["Items"]:
        local_app.dynamodb.delete_item(TableName=table, Key={"id": item["id"]})
    from incident_loop.schemas.envelope import Envelope

    loop = status_of(local_app, tenant, incident)
    for queue, stage, payload in [
        ("PatternQueue", "pattern_matched", {}),
        ("RecoveryQueue", "recovery_suggested", {"pattern_id": loop["pattern_match_result"]["pattern_id"],
                                                 "occurrence_count": 1}),
        ("PolicyQueue", "policy_generated", {"recovery_id": loop["recovery_suggestion"]["recovery_id"]}),
        ("RoutingQueue", "routing_adjusted", {"policy_id": loop["policy_rule"]["policy_id"]}),
    ]:
        env = Envelope(incident_id=incident, tenant_id=tenant, loop_id=loop["loop_id"], stage=stage,
                       correlation_id=incident, payload=payload)
        local_app.send(queue, json.loads(env.model_dump_json()))
    local_app.drain()
    after = {t: count(t, tenant) for t in before}
    assert after == before
    assert status_of(local_app, tenant, incident)["is_complete"] is True
