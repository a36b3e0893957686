"""Answering a CloudFormation custom resource (the deploy-time migrations)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from incident_loop.observability import logger


def send_response(
    event: dict[str, Any], context: Any, status: str, data: dict[str, str], reason: str | None = None
) -> None:
    """PUT the result to the pre-signed ResponseURL; CloudFormation waits for exactly this."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"see log stream {getattr(context, 'log_stream_name', '?')}",
            "PhysicalResourceId": event.get("PhysicalResourceId") or "incident-loop-migrations",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - URL comes from CloudFormation
        logger.info("custom resource answered", status=status, http_status=response.status)
