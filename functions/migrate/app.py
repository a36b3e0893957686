"""Deploy-time migrations: the Migrations custom resource applies migrations/ on create and update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from incident_loop.cfn_response import send_response
from incident_loop.migrate import apply
from incident_loop.observability import logger

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    if event.get("RequestType") == "Delete":
        # The catalog outlives the stack: deleting it is an operator's decision, not CloudFormation's.
        send_response(event, context, "SUCCESS", {"applied": "0"})
        return
    try:
        applied = apply(directory=MIGRATIONS, time_left_ms=context.get_remaining_time_in_millis)
    except Exception as exc:
        logger.exception("migrations failed")
        send_response(event, context, "FAILED", {}, reason=str(exc)[:500])
        return
    send_response(event, context, "SUCCESS", {"applied": str(len(applied))})
