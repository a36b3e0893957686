"""What Bridge 1's merge of sibling patterns does to the rest of the loop, through the functions as deployed
(local_app): the policies confirmed on the narrower groups stop acting without a person, and hand-offs that name an
absorbed pattern act on the pattern it was merged into."""

from __future__ import annotations

from typing import Any

from test_loop_after_match import approve_all, count, report, status_of

from incident_loop.db import transaction

NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")  # seven siblings; an eighth merges them


def upstream(name: str) -> str:
    return f"Skill web_search failed: upstream {name} returned garbage payload"


def sibling(app: Any, tenant: str, name: str, run: str, *, approve: bool = False) -> str:
    incident = report(app, tenant, run, upstream(name), error_type="SkillError")
    app.drain()
    if approve:
        approve_all(app, tenant)
    return incident


def settle(app: Any, tenant: str, name: str, *, approve: bool = False) -> str:
    """Three of one sibling in a row: its own pattern, settled (it takes no other word at that place)."""
    incidents = [sibling(app, tenant, name, f"{name}-{n}", approve=approve) for n in (1, 2, 3)]
    return str(status_of(app, tenant, incidents[0])["pattern_match_result"]["pattern_id"])


def policies(app: Any, tenant: str) -> dict[str, dict[str, Any]]:
    """The tenant's policies, by the pattern each was made for."""
    status, body = app.request("GET", "/policies", tenant)
    assert status == 200, body
    return {p["source_pattern_id"]: p for p in body["policies"]}


def merged_into(tenant: str) -> dict[str, str | None]:
    with transaction(tenant_id=tenant) as conn:
        rows = conn.execute("SELECT id, merged_into FROM failure_patterns WHERE tenant_id = %(t)s",
                            {"t": tenant}).fetchall()
    return {r["id"]: r["merged_into"] for r in rows}


def test_a_merge_puts_the_survivors_active_policy_back_in_shadow_and_disables_the_absorbed_ones(
        local_app: Any, tenant: str) -> None:
    """Before, alpha's active policy went on blocking and now blocked bravo's incidents too, which nobody had
    confirmed it on; bravo's stayed 'active' and never met an incident again."""
    patterns = {name: settle(local_app, tenant, name, approve=name in ("alpha", "bravo")) for name in NAMES}
    for name in ("alpha", "bravo"):
        policy = policies(local_app, tenant)[patterns[name]]
        status, body = local_app.request("POST", f"/policies/{policy['policy_id']}/confirm", tenant, {"by": "op"})
        assert status == 200 and body["activated"] is True, body
    assert len(set(patterns.values())) == 7 and count("failure_patterns", tenant) == 7

    hotel = sibling(local_app, tenant, "hotel", "hotel-1")
    survivor = patterns["alpha"]  # its template sorts first
    assert status_of(local_app, tenant, hotel)["pattern_match_result"]["pattern_id"] == survivor
    assert merged_into(tenant) == {p: None if p == survivor else survivor for p in patterns.values()}

    after = policies(local_app, tenant)
    assert (after[survivor]["mode"], after[survivor]["confirmations_received"]) == ("shadow", 0)
    assert after[survivor]["activated_at"] is None
    assert after[patterns["bravo"]]["mode"] == "disabled"
    assert [p["policy_id"] for p in local_app.request("GET", "/policies", tenant, query={"mode": "active"})[1][
        "policies"]] == []

    again = sibling(local_app, tenant, "bravo", "bravo-4")  # a strong hit on the survivor now
    loop = status_of(local_app, tenant, again)
    assert loop["pattern_match_result"]["pattern_id"] == survivor
    assert loop["pattern_match_result"]["confidence_band"] == "strong_match"
    assert loop["failure_state"] != "prevented" and count("prevention_records", tenant) == 0
    assert policies(local_app, tenant)[survivor]["shadow_evaluations"] >= 1  # counted, as shadow mode counts

    # A person confirms the survivor's policy for the merged group: it acts on all of it again.
    status, body = local_app.request("POST", f"/policies/{after[survivor]['policy_id']}/confirm", tenant,
                                     {"by": "op"})
    assert status == 200 and body["activated"] is True, body
    blocked = sibling(local_app, tenant, "charlie", "charlie-4")
    assert status_of(local_app, tenant, blocked)["failure_state"] == "prevented"


def test_hand_offs_that_name_a_pattern_merged_since_act_on_the_pattern_it_was_merged_into(
        local_app: Any, tenant: str) -> None:
    """Before, Bridge 2 answered the absorbed pattern and Bridge 3 made a policy for it, which no incident would
    ever meet again."""
    patterns = {name: settle(local_app, tenant, name) for name in NAMES}
    survivor, bravo = patterns["alpha"], patterns["bravo"]

    # A fourth bravo through Bridge 2 (auto-applied), its policy hand-off waiting; a fifth through Bridge 1 only.
    fourth = report(local_app, tenant, "bravo-4", upstream("bravo"), error_type="SkillError")
    for queue in ("IncidentQueue", "PatternQueue", "RecoveryQueue"):
        local_app.deliver(queue)
    fifth = report(local_app, tenant, "bravo-5", upstream("bravo"), error_type="SkillError")
    for queue in ("IncidentQueue", "PatternQueue"):
        local_app.deliver(queue)
    assert local_app.depth("PolicyQueue") == 1 and local_app.depth("RecoveryQueue") == 1
    assert status_of(local_app, tenant, fifth)["pattern_match_result"]["pattern_id"] == bravo
    assert status_of(local_app, tenant, fourth)["recovery_suggestion"]["pattern_id"] == bravo

    report(local_app, tenant, "hotel-1", upstream("hotel"), error_type="SkillError")
    for queue in ("IncidentQueue", "PatternQueue"):  # the merge, before the waiting hand-offs are delivered
        local_app.deliver(queue)
    assert merged_into(tenant)[bravo] == survivor
    local_app.drain()

    assert status_of(local_app, tenant, fifth)["recovery_suggestion"]["pattern_id"] == survivor
    # The fourth's recovery named bravo: the policy it was handed on to guards the survivor (bravo's is disabled).
    made = policies(local_app, tenant)
    assert status_of(local_app, tenant, fourth)["policy_rule"]["policy_id"] == made[survivor]["policy_id"]
    assert status_of(local_app, tenant, fifth)["policy_rule"]["policy_id"] == made[survivor]["policy_id"]
    assert made[bravo]["mode"] == "disabled"
