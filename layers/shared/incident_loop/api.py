"""The API (API Gateway REST, Powertools event handler with validation and OpenAPI): the assembly.

One resolver (incident_loop.http.resolver) with the one error map (incident_loop.http.error_map) serves the
loop's, the failures' and CostSim's routers (ingest, the loop API and the CostSim API share it); each function
in the template receives only its own routes. The workflow API has its own assembly (incident_loop.workflow_api):
its routes load the skills, which no other function needs at init.
"""

from __future__ import annotations

from incident_loop.costsim.routes import router as costsim_routes
from incident_loop.http.error_map import map_errors
from incident_loop.http.resolver import BoundaryResolver
from incident_loop.routes.failures import router as failure_routes
from incident_loop.routes.loop import router as loop_routes

# Bad input is rejected before any route runs (incident_loop.http.boundary); the error contract of
# every route is declared in the OpenAPI document (incident_loop.http.resolver).
ROUTERS = (loop_routes, failure_routes, costsim_routes)
app = map_errors(BoundaryResolver())
for router in ROUTERS:
    app.include_router(router)
