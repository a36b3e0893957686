"""The API (API Gateway REST, Powertools event handler with validation and OpenAPI): the assemblies.

One resolver class (incident_loop.http.resolver) with the one error map (incident_loop.http.error_map)
serves every API function, and each function's resolver holds only its own routers: the routes the
template wires to it (tests/unit/test_template.py holds the two together). A function so imports, at
init, only what its own routes need: the CostSim API never loads the loop's bridges, ingest never the
loop API's views, and only the workflow API the skills.
"""

from __future__ import annotations

import importlib

from incident_loop.http.error_map import map_errors
from incident_loop.http.resolver import BoundaryResolver

# The API functions' routers, by the name their handler assembles them under: each a module with a `router`.
ROUTERS: dict[str, tuple[str, ...]] = {
    "ingest": ("incident_loop.routes.ingest",),
    "loop": ("incident_loop.routes.loop", "incident_loop.routes.failures"),
    "costsim": ("incident_loop.costsim.routes",),
    "workflows": ("incident_loop.routes.workflows",),
}


def assemble(*names: str) -> BoundaryResolver:
    """A resolver serving the routers of `names` (keys of ROUTERS), bad input rejected before any route runs
    (incident_loop.http.boundary) and every route's error contract declared (incident_loop.http.resolver)."""
    app = map_errors(BoundaryResolver())
    for name in names:
        for module in ROUTERS[name]:
            app.include_router(importlib.import_module(module).router)
    return app
