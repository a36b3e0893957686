"""CostSim's HTTP routes (the CostSim API's, assembled by incident_loop.api): simulate, status, the V2 breaker,
canary reports, health."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from incident_loop.costsim import service
from incident_loop.http.identity import require_operator, tenant_id
from incident_loop.http.resolver import PUBLIC
from incident_loop.schemas.costsim import DisableRequest, EnableRequest, SimulateRequest

router = Router()
OPERATORS_ONLY = {403: {"description": "The caller's token has no operator role"}}
# Breakers are shared by every tenant: only an operator may switch them.
SWITCH_BREAKERS = "disable or enable a circuit breaker"


@router.post("/costsim/simulate", summary="Cost of an agent plan: V1, and V2 unless its breaker is open")
def post_simulate(request: SimulateRequest) -> dict[str, Any]:
    return service.simulate(tenant_id(), request)


@router.get("/costsim/status", summary="The V2 breaker, recent drift and the last CostSim incident")
def get_status() -> dict[str, Any]:
    tenant_id()
    return service.status()


@router.post("/costsim/breaker/disable", summary="Disable CostSim V2 (operators)", responses=OPERATORS_ONLY)
def post_disable(request: DisableRequest) -> dict[str, Any]:
    tenant_id()
    require_operator(SWITCH_BREAKERS)
    return service.disable_v2(request.reason, request.by, request.until)


@router.post("/costsim/breaker/enable", summary="Enable CostSim V2 again (operators)", responses=OPERATORS_ONLY)
def post_enable(request: EnableRequest) -> dict[str, Any]:
    tenant_id()
    require_operator(SWITCH_BREAKERS)
    return service.enable_v2(request.by, request.reason)


@router.get("/costsim/canary/reports", summary="The latest canary reports")
def get_canary_reports(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    tenant_id()
    return {"reports": service.reports(limit)}


HEALTH = {"application/json": {"schema": {
    "type": "object", "required": ["status", "database", "breakers"],
    "properties": {"status": {"type": "string"}, "database": {"type": "string"}, "breakers": {"type": "object"}}}}}


@router.get("/health", summary="Liveness, the database, and every breaker's state", openapi_extensions=PUBLIC,
            responses={200: {"description": "The service serves ('ok', or 'degraded' with a breaker unknown)",
                             "content": HEALTH},
                       503: {"description": "The catalog database does not answer; the body is the same report",
                             "content": HEALTH}})
def get_health() -> dict[str, Any]:
    return service.health()
