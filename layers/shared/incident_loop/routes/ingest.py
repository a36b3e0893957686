"""The ingest function's HTTP route: POST /incidents, a failed agent run reported by a person or a tool.

Assembled by incident_loop.api; errors map to HTTP in incident_loop.http.error_map.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from incident_loop.http.identity import tenant_id
from incident_loop.loop.ingest import ingest_incident
from incident_loop.schemas.incident import IncidentAccepted, IncidentIn

router = Router()


@router.post("/incidents", summary="Report a failed agent run", responses={202: {"description": "accepted"}})
def post_incident(incident: IncidentIn) -> Response[dict[str, Any]]:
    accepted: IncidentAccepted = ingest_incident(incident, tenant_id())
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted.model_dump())
