"""The loop's HTTP API (API Gateway REST, Powertools event handler with validation and OpenAPI).

One resolver serves every route; each function in the template receives only its own routes.
Errors map to HTTP here and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.db import DatabaseUnavailable, transaction
from incident_loop.failures import store as failures
from incident_loop.failures.api_models import RecoveryUpdate, RecoveryUpdateV1
from incident_loop.http.errors import BadRequest, UnsupportedMediaType, error_response
from incident_loop.http.resolver import BoundaryResolver
from incident_loop.loop.checkpoints import pending_checkpoints, resolve_checkpoint
from incident_loop.loop.errors import Conflict, NotFound, NotReady
from incident_loop.loop.ingest import ingest_incident
from incident_loop.loop.policies import confirm_policy, policies, regret_policy
from incident_loop.loop.routing import report_kpi, routing_view
from incident_loop.loop.status import graduation, loop_status
from incident_loop.observability import logger, metrics
from incident_loop.schemas.api import KpiReport, PolicyFeedback, ResolveCheckpoint
from incident_loop.schemas.incident import IncidentAccepted, IncidentIn
from incident_loop.schemas.loop_events import PolicyMode
from incident_loop.stores.queues import QueueUnavailable

# Bad input is rejected before any route runs (incident_loop.http.boundary); the error contract of
# every route is declared in the OpenAPI document (incident_loop.http.resolver).
app = BoundaryResolver()


def _authorizer() -> dict[str, Any]:
    return dict((app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {})


def tenant_id() -> str:
    """The caller's tenant, from the authorizer's context (never from the request body)."""
    authorizer = _authorizer()
    claims = authorizer.get("claims") or {}
    tenant = authorizer.get("tenant_id") or claims.get("custom:tenant_id")
    if not tenant:
        raise UnauthorizedError("the caller's identity carries no tenant_id")
    return str(tenant)


def caller() -> str | None:
    """Who is calling: the token's subject (the authorizer's principal), if any."""
    authorizer = _authorizer()
    subject = authorizer.get("principalId") or (authorizer.get("claims") or {}).get("sub")
    return str(subject) if subject else None


def _json(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[dict[str, Any]]:
    errors = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "reason": err.get("msg") or err.get("type")}
        for err in exc.errors()
    ]
    logger.info("request rejected", errors=errors)
    return error_response(422, "invalid request", errors)


@app.exception_handler(BadRequest)
def _bad_request(exc: BadRequest) -> Response[dict[str, Any]]:
    logger.info("request rejected", reason=exc.message)
    return error_response(400, exc.message, exc.errors)


@app.exception_handler(UnsupportedMediaType)
def _unsupported(exc: UnsupportedMediaType) -> Response[dict[str, Any]]:
    logger.info("request rejected", reason=exc.message)
    return error_response(415, exc.message, exc.errors)


@app.exception_handler(ServiceError)
def _service_error(exc: ServiceError) -> Response[dict[str, Any]]:
    # Powertools' own HTTP errors (401, 403, and 404 for a path no route serves), in the one body shape.
    return error_response(exc.status_code, exc.msg)


@app.exception_handler(NotFound)
def _not_found(exc: NotFound) -> Response[dict[str, Any]]:
    return error_response(404, str(exc))


@app.exception_handler(Conflict)
def _conflict(exc: Conflict) -> Response[dict[str, Any]]:
    return error_response(409, str(exc))


@app.exception_handler(NotReady)
def _not_ready(exc: NotReady) -> Response[dict[str, Any]]:
    return error_response(409, str(exc))


@app.exception_handler(DatabaseUnavailable)
def _unavailable(exc: DatabaseUnavailable) -> Response[dict[str, Any]]:
    logger.exception("database unavailable")
    return error_response(503, "the catalog is unavailable, retry later")


@app.exception_handler(QueueUnavailable)
def _queue_unavailable(exc: QueueUnavailable) -> Response[dict[str, Any]]:
    # Ingest committed the incident before the queue refused: the client's retry is answered
    # `duplicate: true` and re-sends the Bridge 1 message, so the loop starts on the retry.
    logger.exception("queue unavailable")
    return error_response(503, "a queue of the loop is unavailable, retry later")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[dict[str, Any]]:
    # Nothing escapes the resolver (API Gateway would answer 502): logged with its traceback, answered 500.
    logger.exception("unhandled error", error_type=type(exc).__name__)
    return error_response(500, "internal error")


@app.post("/incidents", summary="Report a failed agent run", responses={202: {"description": "accepted"}})
def post_incident(incident: IncidentIn) -> Response[dict[str, Any]]:
    accepted: IncidentAccepted = ingest_incident(incident, tenant_id())
    return _json(202, accepted.model_dump())


@app.get("/loops/<incident_id>", summary="Where an incident's loop stands", responses={
    200: {"description": "The loop's status as JSON, or its console display (format=console)",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/plain": {"schema": {"type": "string"}}}},
    404: {"description": "No loop of the tenant for this incident"}})
def get_loop(incident_id: str, format: Annotated[str, Query(pattern="^(json|console)$")] = "json") -> Any:
    status = loop_status(tenant_id(), incident_id)
    if format == "console":
        return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body=status.to_console_display())
    return status.to_dict()


@app.get("/checkpoints", summary="Human checkpoints of the tenant")
def get_checkpoints(status: Annotated[str, Query(pattern="^(pending|all)$")] = "pending") -> dict[str, Any]:
    found = pending_checkpoints(tenant_id(), pending_only=status == "pending")
    return {"checkpoints": [c.model_dump(mode="json") for c in found]}


@app.post("/checkpoints/<checkpoint_id>/resolve", summary="Approve, reject or modify at a checkpoint",
          responses={404: {"description": "No checkpoint of the tenant with this id"},
                     409: {"description": "The checkpoint is already resolved"}})
def post_resolve(checkpoint_id: str, decision: ResolveCheckpoint) -> dict[str, Any]:
    return resolve_checkpoint(tenant_id(), checkpoint_id, decision)


@app.get("/policies", summary="Policies of the tenant, optionally by mode")
def get_policies(mode: Annotated[PolicyMode | None, Query()] = None) -> dict[str, Any]:
    return {"policies": [p.to_dict() for p in policies(tenant_id(), mode)]}


@app.post("/policies/<policy_id>/confirm", summary="Confirm a policy (enough confirmations activate it)",
          responses={404: {"description": "No policy of the tenant with this id"}})
def post_confirm(policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    return confirm_policy(tenant_id(), policy_id, feedback)


@app.post("/policies/<policy_id>/regret", summary="Record a run the policy should not have blocked",
          responses={404: {"description": "No policy of the tenant with this id"}})
def post_regret(policy_id: str, feedback: PolicyFeedback) -> dict[str, Any]:
    return regret_policy(tenant_id(), policy_id, feedback)


@app.get("/routing/<agent_id>", summary="The routing adjustments of an agent")
def get_routing(agent_id: str) -> dict[str, Any]:
    return routing_view(tenant_id(), agent_id)


@app.post("/routing/<agent_id>/kpi", summary="Report an agent's KPI; regressions roll adjustments back")
def post_kpi(agent_id: str, report: KpiReport) -> dict[str, Any]:
    return report_kpi(tenant_id(), agent_id, report.kpi)


@app.get("/graduation", summary="The graduation gates and their evidence")
def get_graduation() -> dict[str, Any]:
    return graduation(tenant_id())


# --------------------------------------------------------------------------- recovery tracking (seed 002)

SinceHours = Annotated[int, Query(ge=1, le=24 * 90)]
Limit = Annotated[int, Query(ge=1, le=1000)]
# Offset paging past a million rows is never a useful page (and 2^63 overflowed PostgreSQL's bigint).
MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
NO_FAILURE = {404: {"description": "No failure of the tenant with this id"}}


def _page(rows: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """One page of failures, with where it starts and how long it may be."""
    return {"failures": rows, "limit": limit, "offset": offset, "count": len(rows)}


@app.get("/failures", summary="The tenant's failures, with the seed's filters")
def get_failures(
    run_id: Annotated[str | None, Query(max_length=255)] = None,
    error_code: Annotated[str | None, Query(max_length=255)] = None,
    category: Annotated[str | None, Query(max_length=50)] = None,
    status: Annotated[str, Query(pattern="^(unrecovered|recovered|all)$")] = "all",
    since_hours: SinceHours = 24,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        rows = failures.list_failures(conn, tenant, run_id=run_id, error_code=error_code, category=category,
                                      status=status, since_hours=since_hours, limit=limit, offset=offset)  # type: ignore[arg-type]
    return _page(rows, limit, offset)


@app.get("/failures/stats", summary="Counts by category, severity and error code, and the match rate")
def get_failure_stats(since_hours: SinceHours = 24) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        return failures.stats(conn, tenant, since_hours)


@app.get("/failures/unrecovered", summary="Failures that still need attention")
def get_unrecovered(
    category: Annotated[str | None, Query(max_length=50)] = None,
    since_hours: SinceHours = 24,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        rows = failures.unrecovered(conn, tenant, category=category, since_hours=since_hours, limit=limit,
                                    offset=offset)
    return _page(rows, limit, offset)


@app.get("/failures/<failure_id>", summary="One failure", responses=NO_FAILURE)
def get_failure(failure_id: UUID) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        row = failures.get_failure(conn, tenant, failure_id)
    if row is None:
        raise NotFound(f"failure {failure_id} not found")
    return row


@app.patch("/failures/<failure_id>/recovery", summary="Record the outcome of a recovery attempt", responses=NO_FAILURE)
def patch_recovery(failure_id: UUID, update: RecoveryUpdate) -> dict[str, Any]:
    return _record_recovery(failure_id, update.succeeded, update.by, update.notes)


@app.patch("/api/v1/failures/<failure_id>/recovery", responses=NO_FAILURE,
           summary="Record the outcome of a recovery attempt (seed 002's v1 form)",
           description="The form seed 002's clients send: {recovery_succeeded, notes}. Who recorded it is "
                       "recovered_by when given, else the bearer token's subject.")
def patch_recovery_v1(failure_id: UUID, update: RecoveryUpdateV1) -> dict[str, Any]:
    by = update.recovered_by or (caller() or RecoveryUpdateV1.DEFAULT_BY)[:RecoveryUpdateV1.MAX_BY]
    return _record_recovery(failure_id, update.recovery_succeeded, by, update.notes)


def _record_recovery(failure_id: UUID, succeeded: bool, by: str, notes: str | None) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        row = failures.record_recovery(conn, tenant, failure_id, succeeded=succeeded, by=by, notes=notes)
    if row is None:
        raise NotFound(f"failure {failure_id} not found")
    metrics.add_metric(name="RecoverySuccess" if succeeded else "RecoveryFailure", unit=MetricUnit.Count, value=1)
    return row


# CostSim's routes live beside their domain; errors still map here.
from incident_loop.costsim.routes import router as costsim_router  # noqa: E402

app.include_router(costsim_router)
