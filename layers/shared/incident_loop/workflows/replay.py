"""POST /workflows/{id}/replay: verify a finished run against its audit, record the verification, report it.

The verification (workflows.verify) substitutes the recorded outputs and never calls a skill: a replay
makes no external call. The report is JSON plus one line of text with a severity, CRITICAL on any mismatch.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from incident_loop.loop.errors import Conflict, NotFound
from incident_loop.observability import logger, metrics
from incident_loop.schemas.workflows import FINISHED, Mismatch, ReplayReport, WorkflowDefinition
from incident_loop.workflows.ports import AuditStore, ReplayRecord, SkillSource
from incident_loop.workflows.verify import Verification, verify
from incident_loop.workflows.wiring import audit_store, skill_source

MODE = "recorded_outputs"  # the only mode: outputs substituted from the audit, no skill executed


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_text(run_id: str, outcome: Verification) -> str:
    """The report's one line: severity first (INFO when verified, CRITICAL on any mismatch)."""
    counts = (f"{len(outcome.verified)} verified, {len(outcome.failed)} failed, {len(outcome.skipped)} skipped "
              f"of {outcome.ops_total} ops; 0 skills executed (recorded outputs substituted)")
    if not outcome.mismatches:
        return f"INFO: replay of workflow run {run_id} verified: {counts}"
    first: Mismatch = next(m for m in outcome.mismatches if m.op_index == outcome.first_mismatch)
    return (f"CRITICAL: replay of workflow run {run_id} MISMATCH at op {first.op_index} ({first.op_type}): "
            f"{first.check} expected {_short(first.expected)}, found {_short(first.found)}; {counts}")


def replay_workflow(tenant_id: str, run_id: str, *, audit: AuditStore | None = None,
                    skills: SkillSource | None = None) -> ReplayReport:
    """Verify the tenant's finished run and record it in replay_runs; NotFound (404), Conflict (409) if unfinished."""
    audit, skills = audit_store(audit), skill_source(skills)
    started = time.perf_counter()
    with audit.begin(tenant_id):
        run = audit.run(tenant_id, run_id)
        ops = audit.ops(tenant_id, run_id) if run else []
    if run is None:
        raise NotFound(f"workflow run {run_id} not found")
    if run["status"] not in FINISHED:
        raise Conflict(f"workflow run {run_id} is {run['status']}: only a finished run can be replayed")
    try:
        definition = WorkflowDefinition.model_validate(run["definition"])
    except ValidationError as exc:  # failed as invalid_definition: nothing ran that replay could verify
        raise Conflict(f"workflow run {run_id}'s stored definition does not validate ({exc.error_count()} "
                       "errors): it cannot be replayed") from None
    outcome = verify(definition, ops, skills, run)
    elapsed_ms = (time.perf_counter() - started) * 1000
    first = outcome.first_mismatch
    diff = None if first is None else {
        "op_index": first, "checks": [m.model_dump(mode="json") for m in outcome.mismatches if m.op_index == first]}
    status = "mismatch" if outcome.mismatches else "verified"
    replay_id = f"rp_{uuid4().hex}"
    text = report_text(run_id, outcome)
    with audit.begin(tenant_id):
        audit.record_replay(ReplayRecord(
            replay_id=replay_id, workflow_run_id=run_id, tenant_id=tenant_id, mode=MODE, status=status,
            ops_total=outcome.ops_total, ops_verified=len(outcome.verified), ops_failed=len(outcome.failed),
            ops_skipped=len(outcome.skipped), first_mismatch_op_index=first, mismatch_diff=diff,
            error_message=None if first is None else text))
    metrics.add_metric(name="ReplayRuns", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReplayOpsVerified", unit=MetricUnit.Count, value=len(outcome.verified))
    metrics.add_metric(name="ReplayOpsMismatched", unit=MetricUnit.Count, value=len(outcome.failed))
    metrics.add_metric(name="ReplayVerificationLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    (logger.error if first is not None else logger.info)(
        "replay verified" if first is None else "replay mismatch", workflow_run_id=run_id, replay_id=replay_id,
        first_mismatch_op_index=first, ops_verified=len(outcome.verified), ops_failed=len(outcome.failed))
    return ReplayReport(
        replay_id=replay_id, workflow_run_id=run_id, mode=MODE, status=status,
        severity="CRITICAL" if first is not None else "INFO", ops_total=outcome.ops_total,
        ops_verified=len(outcome.verified), ops_failed=len(outcome.failed), ops_skipped=len(outcome.skipped),
        first_mismatch_op_index=first, mismatches=outcome.mismatches, skills_executed=0,
        duration_ms=round(elapsed_ms, 3), text=text)
