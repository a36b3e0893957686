"""Who is calling: the tenant, the subject and the role that API Gateway's authorizer put in the request context.

Never taken from a request body. Each function reads the request being resolved (Powertools hands it to
every router), so a feature's routes call them without holding the app.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.event_handler.exceptions import ForbiddenError, UnauthorizedError

OPERATOR = "operator"


def _authorizer() -> dict[str, Any]:
    return dict((BaseRouter.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {})


def tenant_id() -> str:
    """The caller's tenant, from the authorizer's context (never from the request body)."""
    authorizer = _authorizer()
    claims = authorizer.get("claims") or {}
    tenant = authorizer.get("tenant_id") or claims.get("custom:tenant_id")
    if not tenant:
        raise UnauthorizedError("the caller's identity carries no tenant_id")
    return str(tenant)


def caller() -> str | None:
    """Who is calling: the token's subject (the authorizer's principal), if any."""
    authorizer = _authorizer()
    subject = authorizer.get("principalId") or (authorizer.get("claims") or {}).get("sub")
    return str(subject) if subject else None


def require_operator(action: str) -> None:
    """ForbiddenError (403) unless the caller's token has the operator role: what is shared by every tenant."""
    if _authorizer().get("role") != OPERATOR:
        raise ForbiddenError(f"only an operator may {action}")
