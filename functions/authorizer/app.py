"""The API's Lambda TOKEN authorizer: verifies the bearer token, passes tenant_id and role to the routes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.auth.authorizer import authorize
from incident_loop.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event)
