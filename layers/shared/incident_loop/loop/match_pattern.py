"""Bridge 1: Incident -> Failure Catalog. Group the incident with its siblings, or prevent it."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from psycopg import Connection

from incident_loop.grouping.matcher import MatchDecision, decide, exact_confidence
from incident_loop.loop.errors import NotReady
from incident_loop.loop.stage import StageOutcome, hand_off
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.loop_events import (
    ConfidenceCalculator,
    LoopFailureState,
    LoopStage,
    PatternMatchResult,
    PolicyMode,
)
from incident_loop.settings import get_settings
from incident_loop.stores.incidents import get_incident, set_status
from incident_loop.stores.loop_store import record_stage
from incident_loop.stores.patterns import PostgresPatternIndex, get_pattern, record_match
from incident_loop.stores.policies import (
    insert_prevention,
    policy_for_pattern,
    record_evaluation,
    save_policy,
)

STAGE = LoopStage.PATTERN_MATCHED
# A brand-new pattern is certain to be new, but says nothing yet about recovery: keep it NOVEL.
NEW_PATTERN_CONFIDENCE = 0.5


def match_pattern(conn: Connection[Any], env: Envelope) -> StageOutcome:
    """Match the incident against the tenant's failure catalog; an ACTIVE policy prevents it."""
    incident = get_incident(conn, env.tenant_id, env.incident_id)
    if incident is None:  # not stored yet, or not this tenant's: retried, then dead-lettered
        raise NotReady(f"incident {env.incident_id} of tenant {env.tenant_id} is not stored yet")
    decision = decide(
        incident["error_message"],
        incident["error_type"],
        env.tenant_id,
        PostgresPatternIndex(conn),
        get_settings().fuzzy_threshold,
    )
    if decision.pattern_id is not None:
        prevented = _apply_policy(conn, env, decision)
        if prevented is not None:
            return prevented

    pattern_id, occurrences, is_new = record_match(
        conn, env.tenant_id, env.incident_id, incident["error_type"], decision
    )
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
    details = {
        "match_result": result.to_dict(),
        "next": hand_off(LoopStage.RECOVERY_SUGGESTED, pattern_id=pattern_id, occurrence_count=occurrences),
    }
    record_stage(
        conn,
        env.event(STAGE, details, confidence_band=result.confidence_band),
    )
    return StageOutcome(
        details, [env.next(LoopStage.RECOVERY_SUGGESTED, pattern_id=pattern_id, occurrence_count=occurrences)]
    )


def match_confidence(decision: MatchDecision) -> float:
    """The seed's 0.95 for an exact hash hit on the pattern's template (seed 000: "exact hash, 0.95
    confidence"; its calibrated probability is at least that, docs/benchmarks.md); otherwise (a hit on
    words the pattern has generalised, a fuzzy join) the calibrated probability that the incident
    belongs with the pattern's members."""
    if decision.match_type != "fuzzy" and not decision.generalised:  # "new": another worker created it first
        return ConfidenceCalculator.EXACT_MATCH_CONFIDENCE
    return decision.confidence


def _apply_policy(conn: Connection[Any], env: Envelope, decision: Any) -> StageOutcome | None:
    """Evaluate the pattern's policy: SHADOW counts what it would have done, ACTIVE prevents."""
    policy = policy_for_pattern(conn, env.tenant_id, decision.pattern_id)
    if policy is None or policy.mode not in (PolicyMode.SHADOW, PolicyMode.ACTIVE):
        return None
    would_block = policy.action != "warn"
    if policy.mode == PolicyMode.SHADOW:
        if record_evaluation(conn, policy, env.incident_id, would_block):
            policy.record_shadow_evaluation(would_block)
            save_policy(conn, env.tenant_id, policy)
        return None

    record_evaluation(conn, policy, env.incident_id, True)
    pattern = get_pattern(conn, env.tenant_id, decision.pattern_id)
    assert pattern is not None
    prevention_id = insert_prevention(
        conn,
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
        confidence=match_confidence(decision),
        signature_hash=decision.signature,
        match_details={"match_type": decision.match_type, "template": decision.template,
                       "prevented_by": policy.policy_id, "prevention_id": prevention_id},
    )
    details = {"match_result": result.to_dict(), "prevention_id": prevention_id,
               "policy_id": policy.policy_id, "next": None}
    record_stage(
        conn,
        env.event(STAGE, details, failure_state=LoopFailureState.PREVENTED, confidence_band=result.confidence_band),
    )
    set_status(conn, env.tenant_id, env.incident_id, "prevented")
    return StageOutcome(details, [])
