"""Recovery tracking over HTTP (seed 002): the tenant's failures, their counts, and recovery outcomes.

The loop API's, with routes/loop.py (incident_loop.api assembles them); errors map to HTTP in
incident_loop.http.error_map.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit

from incident_loop.db import transaction
from incident_loop.http.identity import caller, tenant_id
from incident_loop.loop.errors import NotFound
from incident_loop.observability import metrics
from incident_loop.schemas.failures import RecoveryUpdate, RecoveryUpdateV1
from incident_loop.stores import failures

router = Router()

SinceHours = Annotated[int, Query(ge=1, le=24 * 90)]
Limit = Annotated[int, Query(ge=1, le=1000)]
# Offset paging past a million rows is never a useful page (and 2^63 overflowed PostgreSQL's bigint).
MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
NO_FAILURE = {404: {"description": "No failure of the tenant with this id"}}


def _page(rows: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """One page of failures, with where it starts and how long it may be."""
    return {"failures": rows, "limit": limit, "offset": offset, "count": len(rows)}


@router.get("/failures", summary="The tenant's failures, with the seed's filters")
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


@router.get("/failures/stats", summary="Counts by category, severity and error code, and the match rate")
def get_failure_stats(since_hours: SinceHours = 24) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        return failures.stats(conn, tenant, since_hours)


@router.get("/failures/unrecovered", summary="Failures that still need attention")
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


@router.get("/failures/<failure_id>", summary="One failure", responses=NO_FAILURE)
def get_failure(failure_id: UUID) -> dict[str, Any]:
    tenant = tenant_id()
    with transaction(tenant_id=tenant) as conn:
        row = failures.get_failure(conn, tenant, failure_id)
    if row is None:
        raise NotFound(f"failure {failure_id} not found")
    return row


@router.patch("/failures/<failure_id>/recovery", summary="Record the outcome of a recovery attempt",
              responses=NO_FAILURE)
def patch_recovery(failure_id: UUID, update: RecoveryUpdate) -> dict[str, Any]:
    return _record_recovery(failure_id, update.succeeded, update.by, update.notes)


@router.patch("/api/v1/failures/<failure_id>/recovery", responses=NO_FAILURE,
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
