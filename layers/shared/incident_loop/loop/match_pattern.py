"""Bridge 1: Incident -> Failure Catalog. Group the incident with its siblings, or prevent it."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

from incident_loop.grouping.matcher import CONFIG, MatchDecision, candidate_key, decide, exact_confidence
from incident_loop.grouping.normalise import signature
from incident_loop.loop.announce import announce_demotion
from incident_loop.loop.errors import NotReady
from incident_loop.loop.outcome import StageOutcome
from incident_loop.observability import logger
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop.confidence import ConfidenceBand, ConfidenceCalculator
from incident_loop.schemas.loop.enums import LoopFailureState, PolicyMode
from incident_loop.schemas.loop.results import PatternMatchResult
from incident_loop.settings import get_settings
from incident_loop.stores.ports import UnitOfWork

# A brand-new pattern is certain to be new, but says nothing yet about recovery: keep it NOVEL.
NEW_PATTERN_CONFIDENCE = 0.5


def match_pattern(uow: UnitOfWork, env: Envelope) -> StageOutcome:
    """Match the incident against the tenant's failure catalog; an ACTIVE policy prevents it."""
    incident = uow.incidents.get(env.tenant_id, env.incident_id)
    if incident is None:  # not stored yet, or not this tenant's: retried, then dead-lettered
        raise NotReady(f"incident {env.incident_id} of tenant {env.tenant_id} is not stored yet")
    decision = decide(
        incident["error_message"],
        incident["error_type"],
        env.tenant_id,
        uow.patterns,
        get_settings().fuzzy_threshold,
    )
    if decision.pattern_id is not None:
        prevented = _apply_policy(uow, env, decision)
        if prevented is not None:
            return prevented

    pattern_id, occurrences, is_new = uow.patterns.record_match(
        env.tenant_id, env.incident_id, incident["error_type"], decision
    )
    if decision.absorbed and pattern_id == decision.pattern_id:
        _policies_after_merge(uow, env.tenant_id, pattern_id, decision.absorbed)
    confidence = NEW_PATTERN_CONFIDENCE if is_new else match_confidence(decision)
    result = PatternMatchResult.from_match(
        incident_id=env.incident_id,
        pattern_id=pattern_id,
        confidence=confidence,
        signature_hash=decision.signature,
        is_new_pattern=is_new,
        match_details={
            "match_type": "new" if is_new else decision.match_type,
            "calibrated_confidence": None if is_new else decision.confidence or exact_confidence(decision.template),
            "template": decision.template,
            "pattern_type": decision.pattern_type,
            "category": decision.category,
            "occurrence_count": occurrences,
        },
    )
    return StageOutcome(
        {"match_result": result.to_dict()},
        # How sure the match is goes with it: Bridge 2 acts without a person only on a strong one.
        hand_off={"pattern_id": pattern_id, "occurrence_count": occurrences, "match_confidence": confidence},
        confidence_band=result.confidence_band,
    )


def read_ahead(uow: UnitOfWork, envs: Sequence[Envelope]) -> None:
    """For a batch of one tenant: its incidents, the patterns their signatures hit and those patterns'
    policies, in three reads (what match_pattern reads for each envelope)."""
    tenant = envs[0].tenant_id
    incidents = uow.incidents.get_many(tenant, {env.incident_id for env in envs})
    # The signature decide() will look up: the message's template under the matcher's configuration.
    templates = {(row["error_type"], CONFIG.template(row["error_message"])) for row in incidents.values()}
    # Every message's candidate key, locked first and in one order (stores/patterns.py): a pattern's row is
    # locked only under its key, so no batch waits for a row while holding a key another batch waits for.
    uow.patterns.lock_keys(tenant, {(error_type, candidate_key(text.split(" ") if text else []))
                                    for error_type, text in templates})
    signatures = {signature(error_type, text) for error_type, text in templates}
    hits = uow.patterns.by_signatures(tenant, signatures) if signatures else {}
    if hits:
        uow.policies.for_patterns(tenant, {hit.pattern_id for hit in hits.values()})


def match_confidence(decision: MatchDecision) -> float:
    """The seed's 0.95 for an exact hash hit on the pattern's template (seed 000: "exact hash, 0.95
    confidence"; such hits belong 99.9% of the time, docs/benchmarks.md); otherwise (a hit on words
    the pattern has generalised, a fuzzy join) the calibrated probability that the incident belongs
    with the pattern's members. The calibrated figure is in the match details either way."""
    if decision.match_type != "fuzzy" and not decision.generalised:  # "new": another worker created it first
        return ConfidenceCalculator.EXACT_MATCH_CONFIDENCE
    return decision.confidence


def _apply_policy(uow: UnitOfWork, env: Envelope, decision: MatchDecision) -> StageOutcome | None:
    """Evaluate the pattern's policy: SHADOW counts what it would have done, ACTIVE prevents, but only an incident
    that matched the pattern strongly (seed 003: only a strong match proceeds without a person); one that joined it
    at a weaker confidence goes through the loop, where a person sees it."""
    assert decision.pattern_id is not None
    policy = uow.policies.for_pattern(env.tenant_id, decision.pattern_id)
    if policy is None or policy.mode not in (PolicyMode.SHADOW, PolicyMode.ACTIVE):
        return None
    would_block = policy.action != "warn"
    if policy.mode == PolicyMode.SHADOW:
        uow.policies.record_shadow(env.tenant_id, policy, env.incident_id, would_block)
        return None
    if not would_block:  # an active "warn" warns: counted as shadow mode counted it, and the loop goes on
        uow.policies.record_evaluation(policy, env.incident_id, False)
        logger.info("policy warned", policy_id=policy.policy_id, incident_id=env.incident_id)
        return None
    confidence = match_confidence(decision)
    if not ConfidenceBand.from_confidence(confidence).allows_auto_apply():
        logger.info("policy not applied to a weak match", policy_id=policy.policy_id, incident_id=env.incident_id,
                    match_confidence=confidence)
        return None

    uow.policies.record_evaluation(policy, env.incident_id, True)
    pattern = uow.patterns.get(env.tenant_id, decision.pattern_id)
    assert pattern is not None
    prevention_id = uow.policies.insert_prevention(
        prevention_id=f"prev_{uuid4().hex[:16]}",
        tenant_id=env.tenant_id,
        policy=policy,
        original_incident_id=pattern["first_incident_id"],
        blocked_incident_id=env.incident_id,
        signature_hash=decision.signature,
    )
    result = PatternMatchResult.from_match(
        incident_id=env.incident_id,
        pattern_id=decision.pattern_id,
        confidence=confidence,
        signature_hash=decision.signature,
        match_details={"match_type": decision.match_type, "template": decision.template,
                       "prevented_by": policy.policy_id, "prevention_id": prevention_id},
    )
    uow.incidents.set_status(env.tenant_id, env.incident_id, "prevented")
    return StageOutcome(
        {"match_result": result.to_dict(), "prevention_id": prevention_id, "policy_id": policy.policy_id},
        failure_state=LoopFailureState.PREVENTED,
        confidence_band=result.confidence_band,
    )


def _policies_after_merge(uow: UnitOfWork, tenant_id: str, survivor: str, absorbed: Sequence[str]) -> None:
    """Bridge 1 merged siblings into the survivor: no policy confirmed on one of the narrower groups acts on the
    merged one without a person. The survivor's, if ACTIVE, returns to SHADOW (PolicyRule.widen); an absorbed
    pattern's is DISABLED (PolicyRule.retire): its incidents now meet the survivor's. Locked, as a person's
    confirmation locks them."""
    found = uow.policies.for_patterns(tenant_id, {survivor, *absorbed})
    if not found:
        return
    for policy in uow.policies.get_many(tenant_id, {p.policy_id for p in found.values()}).values():
        was, activated_at = policy.mode, policy.activated_at
        if policy.widen() if policy.source_pattern_id == survivor else policy.retire():
            uow.policies.save(tenant_id, policy)
            logger.warning("policy changed by a pattern merge", policy_id=policy.policy_id, was=was.value,
                           now=policy.mode.value, pattern_id=policy.source_pattern_id, merged_into=survivor)
            if was == PolicyMode.ACTIVE:
                why = ("its pattern absorbed sibling patterns; confirm it again to act on all of them"
                       if policy.source_pattern_id == survivor else f"its pattern was merged into {survivor}")
                announce_demotion(uow, tenant_id, policy, activated_at, why)
