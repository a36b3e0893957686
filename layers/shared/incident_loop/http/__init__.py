"""The HTTP boundary of the API: the resolver, what a request must be before a route sees it, the one error body
and the error map, and who is calling (tenant, subject, role). The routers live with their features (routes/,
costsim/routes.py); incident_loop.api assembles them."""
