"""The loop's HTTP routes: loop status, checkpoints, policies, routing and graduation (the loop API's).

Assembled by incident_loop.api; errors map to HTTP in incident_loop.http.error_map. Incidents come in
through routes/ingest.py, the ingest function's own router.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from incident_loop.http.identity import tenant_id
from incident_loop.loop.checkpoints import pending_checkpoints, resolve_checkpoint
from incident_loop.loop.policies import confirm_policy, policies, regret_policy
from incident_loop.loop.routing import report_kpi, routing_view
from incident_loop.loop.status import graduation, loop_status
from incident_loop.schemas.loop.enums import PolicyMode
from incident_loop.schemas.loop.requests import KpiReport, PolicyFeedback, ResolveCheckpoint

router = Router()
# An agent as incidents name it (IncidentIn.agent_id): a longer one is no agent, and would not fit the index.
AgentId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/loops/<incident_id>", summary="Where an incident's loop stands", responses={
    200: {"description": "The loop's status as JSON, or its console display (format=console)",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/plain": {"schema": {"type": "string"}}}},
    404: {"description": "No loop of the tenant for this incident"}})
def get_loop(incident_id: str, format: Annotated[str, Query(pattern="^(json|console)$")] = "json") -> Any:
    status = loop_status(tenant_id(), incident_id)
    if format == "console":
        return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body=status.to_console_display())
    return status.to_dict()


@router.get("/checkpoints", summary="Human checkpoints of the tenant")
def get_checkpoints(status: Annotated[str, Query(pattern="^(pending|all)$")] = "pending") -> dict[str, Any]:
    found = pending_checkpoints(tenant_id(), pending_only=status == "pending")
    return {"checkpoints": [c.model_dump(mode="json") for c in found]}


@router.post("/checkpoints/<checkpoint_id>/resolve", summary="Approve, reject or modify at a checkpoint",
             responses={404: {"description": "No checkpoint of the tenant with this id"},
                        409: {"description": "The checkpoint is already resolved"}})
def post_resolve(checkpoint_id: str, decision: ResolveCheckpoint) -> dict[str, Any]:
    return resolve_checkpoint(tenant_id(), checkpoint_id, decision)


@router.get("/policies", summary="Policies of the tenant, optionally by mode")
def get_policies(mode: Annotated[PolicyMode | None, Query()] = None) -> dict[str, Any]:
    return {"policies": [p.to_dict() for p in policies(tenant_id(), mode)]}


@router.post("/policies/<policy_id>/confirm", summary="Confirm a policy (enough confirmations activate it)",
             responses={404: {"description": "No policy of the tenant with this id"}})
def post_confirm(policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    return confirm_policy(tenant_id(), policy_id, feedback)


@router.post("/policies/<policy_id>/regret", summary="Record a run the policy should not have blocked",
             responses={404: {"description": "No policy of the tenant with this id"}})
def post_regret(policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    return regret_policy(tenant_id(), policy_id, feedback)


@router.get("/routing/<agent_id>", summary="The routing adjustments of an agent")
def get_routing(agent_id: AgentId) -> dict[str, Any]:
    return routing_view(tenant_id(), agent_id)


@router.post("/routing/<agent_id>/kpi", summary="Report an agent's KPI; regressions roll adjustments back")
def post_kpi(agent_id: AgentId, report: KpiReport) -> dict[str, Any]:
    return report_kpi(tenant_id(), agent_id, report.kpi)


@router.get("/graduation", summary="The graduation gates and their evidence")
def get_graduation() -> dict[str, Any]:
    return graduation(tenant_id())
