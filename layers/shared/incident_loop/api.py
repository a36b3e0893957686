"""The API (API Gateway REST, Powertools event handler with validation and OpenAPI): the assembly.

One resolver (incident_loop.http.resolver) with the one error map (incident_loop.http.error_map) serves
every feature's router; each function in the template receives only its own routes.
"""

from __future__ import annotations

from incident_loop.costsim.routes import router as costsim_routes
from incident_loop.http.error_map import map_errors
from incident_loop.http.resolver import BoundaryResolver
from incident_loop.routes.failures import router as failure_routes
from incident_loop.routes.loop import router as loop_routes
from incident_loop.routes.workflows import router as workflow_routes

# Bad input is rejected before any route runs (incident_loop.http.boundary); the error contract of
# every route is declared in the OpenAPI document (incident_loop.http.resolver).
app = map_errors(BoundaryResolver())
app.include_router(loop_routes)
app.include_router(failure_routes)
app.include_router(costsim_routes)
app.include_router(workflow_routes)
