"""The loop after pattern matching, through the functions as deployed (local_app): an approval whose hand-off
the queue refused, an active "warn" policy, regrets, a KPI rollback with no baseline, and GET /loops after
the loop's policy and adjustment changed."""

from __future__ import annotations

from typing import Any

import pytest

from incident_loop.db import transaction
from incident_loop.stores.queues import QueueUnavailable, SqsStageQueues

BASE = {"agent_id": "agent-1", "error_type": "SkillTimeoutError", "skill_id": "web_search", "severity": "high"}


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


def approve_all(app: Any, tenant: str) -> None:
    _, body = app.request("GET", "/checkpoints", tenant, query={"status": "pending"})
    for cp in body["checkpoints"]:
        status, answer = app.request("POST", f"/checkpoints/{cp['checkpoint_id']}/resolve", tenant,
                                     {"resolution": "approve", "resolved_by": "op"})
        assert status == 200, answer
    app.drain()


def policy_after_three(app: Any, tenant: str) -> dict[str, Any]:
    for n in (1, 2, 3):
        report(app, tenant, f"run-{n}", timeout(10 * n))
        app.drain()
        approve_all(app, tenant)
    _, body = app.request("GET", "/policies", tenant)
    [policy] = body["policies"]
    return dict(policy)


def test_an_approval_whose_hand_off_the_queue_refused_goes_on_when_the_client_retries(
        local_app: Any, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision commits, then the queue refuses the hand-off (503, retry later); the retry of the same
    decision sends it again (it was a 409, and the loop never went past recovery_suggested)."""
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    [checkpoint] = status_of(local_app, tenant, incident)["pending_checkpoints"]

    real_send = SqsStageQueues.send
    calls = {"n": 0}

    def flaky(self: Any, envelope: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # one transient SQS failure
            raise QueueUnavailable("queue refused the message (ServiceUnavailable)")
        real_send(self, envelope)

    monkeypatch.setattr(SqsStageQueues, "send", flaky)
    first = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", tenant,
                              {"resolution": "approve", "resolved_by": "op"})
    assert first[0] == 503  # "a queue of the loop is unavailable, retry later"
    retry = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", tenant,
                              {"resolution": "approve", "resolved_by": "op"})
    assert retry[0] == 200 and retry[1]["repeated"] is True and retry[1]["resumed_at"] == "policy_generated"
    local_app.drain()
    loop = status_of(local_app, tenant, incident)
    assert loop["is_complete"] is True and count("policy_rules", tenant) == 1
    other = local_app.request("POST", f"/checkpoints/{checkpoint}/resolve", tenant,
                              {"resolution": "reject", "resolved_by": "op"})
    assert other[0] == 409  # another decision on a resolved checkpoint is still refused


def validation(n: int) -> str:
    return f"Output failed schema validation: unexpected field 'extra_{n}' at step {n}"


def test_an_active_warn_policy_warns_and_blocks_nothing_as_shadow_mode_counted(local_app: Any, tenant: str) -> None:
    kw = {"error_type": "SchemaValidationError"}
    report(local_app, tenant, "run-1", validation(1), **kw)
    local_app.drain()
    approve_all(local_app, tenant)
    report(local_app, tenant, "run-2", validation(2), **kw)  # meets the shadow policy
    local_app.drain()
    approve_all(local_app, tenant)
    [policy] = local_app.request("GET", "/policies", tenant)[1]["policies"]
    assert policy["action"] == "warn"
    assert (policy["shadow_evaluations"], policy["shadow_would_block"]) == (1, 0)  # shadow: "would not block"

    assert local_app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "op"})[1]["activated"]
    third = report(local_app, tenant, "run-3", validation(3), **kw)
    local_app.drain()
    loop = status_of(local_app, tenant, third)
    # A warn policy warns; it must not block the run it shadow-counted as "would not block".
    assert loop["failure_state"] != "prevented" and count("prevention_records", tenant) == 0


def test_regrets_of_the_shadow_period_do_not_count_against_the_activation(local_app: Any, tenant: str) -> None:
    policy = policy_after_three(local_app, tenant)
    pid = policy["policy_id"]
    shadow = [local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op"})[1]["demoted"]
              for _ in range(3)]
    assert shadow == [False, False, False]
    assert local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})[1]["activated"] is True
    answer = local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op"})[1]
    assert answer["demoted"] is False, "one regret demoted a freshly activated policy (threshold is 3)"


def test_a_reactivated_policy_needs_three_regrets_again_to_be_demoted(local_app: Any, tenant: str) -> None:
    policy = policy_after_three(local_app, tenant)
    pid = policy["policy_id"]
    local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})
    assert [local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op"})[1]["demoted"]
            for _ in range(3)] == [False, False, True]
    assert local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})[1]["activated"] is True
    answer = local_app.request("POST", f"/policies/{pid}/regret", tenant, {"by": "op"})[1]
    assert answer["demoted"] is False, "one regret demoted the re-activated policy"


def test_an_adjustment_made_before_any_kpi_takes_the_first_one_as_its_baseline(local_app: Any, tenant: str) -> None:
    report(local_app, tenant, "run-1", timeout(30))  # no KPI reported for agent-1 yet
    local_app.drain()
    approve_all(local_app, tenant)
    [adj] = local_app.request("GET", "/routing/agent-1", tenant)[1]["adjustments"]
    assert adj["kpi_baseline"] is None
    healthy = local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.95})[1]
    collapsed = local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.10})[1]
    view = local_app.request("GET", "/routing/agent-1", tenant)[1]
    assert healthy["rolled_back"] == [] and collapsed["rolled_back"] == [adj["adjustment_id"]]
    assert view["active_adjustments"] == 0 and view["adjustments"][0]["kpi_baseline"] == 0.95


def test_loop_status_shows_the_policy_and_adjustment_as_they_are_now(
        local_app: Any, tenant: str) -> None:
    local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.9})
    incident = report(local_app, tenant, "run-1", timeout(30))
    local_app.drain()
    approve_all(local_app, tenant)
    loop = status_of(local_app, tenant, incident)
    assert loop["is_complete"] is True
    pid = loop["policy_rule"]["policy_id"]
    assert local_app.request("POST", f"/policies/{pid}/confirm", tenant, {"by": "op"})[1]["activated"] is True
    rolled = local_app.request("POST", "/routing/agent-1/kpi", tenant, {"kpi": 0.5})[1]["rolled_back"]
    assert rolled == [loop["routing_adjustment"]["adjustment_id"]]

    after = status_of(local_app, tenant, incident)
    assert after["routing_adjustment"]["was_rolled_back"] is True  # it showed the adjustment in force
    assert after["policy_rule"]["mode"] == "active"  # it showed the policy in shadow mode


def test_a_recovery_people_rejected_is_not_auto_applied_until_a_person_approves_it_again(
        local_app: Any, tenant: str) -> None:
    """Rejected for incidents 1 and 2, the same recovery was auto-applied on the third occurrence (confidence and
    occurrences are all the seed's rule reads); now it asks a person again, and once one approves, the rule is
    the seed's again."""
    for n in (1, 2):
        incident = report(local_app, tenant, f"run-{n}", timeout(10 * n))
        local_app.drain()
        [cp] = status_of(local_app, tenant, incident)["pending_checkpoints"]
        status, _ = local_app.request("POST", f"/checkpoints/{cp}/resolve", tenant,
                                      {"resolution": "reject", "resolved_by": "op", "reason": "never retry this"})
        assert status == 200
        local_app.drain()
    third = report(local_app, tenant, "run-3", timeout(30))
    local_app.drain()
    loop = status_of(local_app, tenant, third)
    assert not loop["recovery_suggestion"]["auto_applicable"] and len(loop["pending_checkpoints"]) == 1
    approve_all(local_app, tenant)  # a person says yes this time
    fourth = report(local_app, tenant, "run-4", timeout(40))
    local_app.drain()
    assert status_of(local_app, tenant, fourth)["recovery_suggestion"]["auto_applicable"] is True
