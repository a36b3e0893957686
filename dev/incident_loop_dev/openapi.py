"""Print the API's OpenAPI document, generated from the resolver (committed as docs/openapi.json)."""

from __future__ import annotations

import json


def document() -> str:
    """The OpenAPI document of every route (the functions' assemblies together) as stable, indented JSON."""
    from incident_loop.api import ROUTERS, assemble

    whole = assemble(*ROUTERS)  # what each function's resolver serves, documented as one API
    return json.dumps(json.loads(whole.get_openapi_json_schema()), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
