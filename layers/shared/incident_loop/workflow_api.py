"""The workflow API's assembly: the workflow and notification routes on the one resolver and error map.

Apart from incident_loop.api so that ingest, the loop API and the CostSim API never import these routes'
models (nor the skills behind them) at init.
"""

from __future__ import annotations

from incident_loop.http.error_map import map_errors
from incident_loop.http.resolver import BoundaryResolver
from incident_loop.routes.workflows import router as workflow_routes

ROUTERS = (workflow_routes,)
app = map_errors(BoundaryResolver())
for router in ROUTERS:
    app.include_router(router)
