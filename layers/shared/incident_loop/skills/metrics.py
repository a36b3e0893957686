"""The skills' CloudWatch metrics (EMF), seed 004's first ten (docs/skills.md maps the names).

Each is one `single_metric` with its own dimensions (skill or target), written at once: a per-skill or
per-target dimension cannot share the function's metric set, whose dimensions apply to every metric in it.
Tenant ids are high-cardinality, so they ride along as metadata (searchable in Logs Insights), never as a
dimension.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from incident_loop.breaker import BreakerState, Transition
from incident_loop.breaker.config import SKILL_PREFIX, split_skill_target
from incident_loop.observability import metrics

EXECUTIONS = "SkillExecutions"
LATENCY = "SkillExecutionLatency"
IDEMPOTENCY_HITS = "SkillIdempotencyHits"
IDEMPOTENCY_CONFLICTS = "SkillIdempotencyConflicts"
BREAKER_STATE = "SkillBreakerState"
BREAKER_FAILURES = "SkillBreakerFailures"
BREAKER_SUCCESSES = "SkillBreakerSuccesses"
BREAKER_OPENS = "SkillBreakerOpens"
BREAKER_CLOSES = "SkillBreakerCloses"
BREAKER_REJECTIONS = "SkillBreakerRejections"

# The seed's gauge values, plus DISABLED (an operator switched the target off).
STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2, BreakerState.DISABLED: 3}


def emit(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, *,
         metadata: dict[str, Any] | None = None, **dimensions: str) -> None:
    """Write one metric now, with the service dimension and `dimensions`."""
    with single_metric(name=name, unit=unit, value=value, namespace=metrics.namespace,
                       default_dimensions={"service": str(metrics.service)}) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
        for key, meta in (metadata or {}).items():
            metric.add_metadata(key=key, value=meta)


def execution(skill: str, status: str, latency_ms: float, *, tenant_id: str, code: str | None) -> None:
    """One finished execute(): counted by (skill, status) and timed by skill."""
    meta = {"tenant_id": tenant_id, **({"error_code": code} if code else {})}
    emit(EXECUTIONS, skill=skill, status=status, metadata=meta)
    emit(LATENCY, latency_ms, MetricUnit.Milliseconds, skill=skill, metadata={"tenant_id": tenant_id})


def idempotency(skill: str, *, hit: bool, tenant_id: str) -> None:
    """A stored result returned (hit) or a key reused with other arguments (conflict)."""
    emit(IDEMPOTENCY_HITS if hit else IDEMPOTENCY_CONFLICTS, skill=skill, metadata={"tenant_id": tenant_id})


def _target(target: str, metadata: dict[str, Any]) -> str:
    """The target's dimension: a tenant's own target counts under the target (its host), the tenant as metadata."""
    shared, tenant = split_skill_target(target)
    if tenant is not None:
        metadata["tenant_id"] = tenant
    return shared


def breaker_outcome(target: str, name: str, reason: str | None = None) -> None:
    """A failure, success or rejection recorded on a skill target's breaker."""
    meta: dict[str, Any] = {"reason": reason} if reason else {}
    emit(name, target=_target(target, meta), metadata=meta)


def on_transition(t: Transition) -> None:
    """Hooked onto every `skill:<target>` breaker: its state gauge, and opens and closes counted.

    The breaker itself already emits `BreakerTransition`, logs and records history; these add the target.
    """
    if not t.breaker.startswith(SKILL_PREFIX):
        return
    meta: dict[str, Any] = {}
    target = _target(t.breaker[len(SKILL_PREFIX):], meta)
    emit(BREAKER_STATE, STATE_VALUES[t.to_state], MetricUnit.Count, target=target, metadata=meta)
    if t.to_state is BreakerState.OPEN:
        emit(BREAKER_OPENS, target=target, metadata={**meta, "reason": t.reason})
    elif t.to_state is BreakerState.CLOSED:
        emit(BREAKER_CLOSES, target=target, metadata={**meta, "reason": t.reason})
