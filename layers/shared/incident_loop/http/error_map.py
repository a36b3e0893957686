"""The error map: every exception a route can raise becomes its HTTP status in the one error body, here only.

`map_errors(app)` registers the handlers on the API's resolver. Store code turns driver errors into
the domain's exceptions (DatabaseUnavailable, QueueUnavailable, NotFound, ...); this maps those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from incident_loop.breaker.store import StoreUnavailable
from incident_loop.db import DatabaseConflict, DatabaseUnavailable, ValueTooLarge
from incident_loop.http.errors import BadRequest, UnsupportedMediaType, error_response
from incident_loop.http.resolver import BoundaryResolver
from incident_loop.loop.errors import Conflict, NotFound, NotReady
from incident_loop.observability import logger
from incident_loop.stores.queues import QueueUnavailable
from incident_loop.workflows.errors import InvalidDefinition, TargetsUnverifiable

Answer = Response[dict[str, Any]]


def _invalid(exc: RequestValidationError) -> Answer:
    errors = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "reason": err.get("msg") or err.get("type")}
        for err in exc.errors()
    ]
    logger.info("request rejected", errors=errors)
    return error_response(422, "invalid request", errors)


def _invalid_definition(exc: InvalidDefinition) -> Answer:
    # A workflow the skill registry refuses (unknown skill, literal args its input model rejects).
    logger.info("request rejected", errors=exc.errors)
    return error_response(422, "invalid workflow definition", exc.errors)


def _bad_request(exc: BadRequest) -> Answer:
    logger.info("request rejected", reason=exc.message)
    return error_response(400, exc.message, exc.errors)


def _unsupported(exc: UnsupportedMediaType) -> Answer:
    logger.info("request rejected", reason=exc.message)
    return error_response(415, exc.message, exc.errors)


def _service_error(exc: ServiceError) -> Answer:
    # Powertools' own HTTP errors (401, 403, and 404 for a path no route serves), in the one body shape.
    return error_response(exc.status_code, exc.msg)


def _not_found(exc: NotFound) -> Answer:
    return error_response(404, str(exc))


def _conflict(exc: Conflict | NotReady) -> Answer:
    return error_response(409, str(exc))


def _unavailable(exc: DatabaseUnavailable) -> Answer:
    logger.exception("database unavailable")
    return error_response(503, "the catalog is unavailable, retry later")


def _breaker_store_unavailable(exc: StoreUnavailable) -> Answer:
    # The breakers' DynamoDB table did not answer: an operator's disable or enable did not take effect.
    logger.exception("breaker store unavailable")
    return error_response(503, "the breaker store is unavailable, retry later")


def _database_conflict(exc: DatabaseConflict) -> Answer:
    logger.warning("transaction lost to a concurrent one", reason=str(exc))
    return error_response(503, "a concurrent change got in the way, retry")


def _too_large(exc: ValueTooLarge) -> Answer:
    # A value past what PostgreSQL stores or indexes (the schemas' bounds should have refused it first).
    logger.warning("request rejected", reason=str(exc))
    return error_response(422, "a value of the request is too large to store")


def _queue_unavailable(exc: QueueUnavailable) -> Answer:
    # Ingest committed the incident before the queue refused: the client's retry is answered
    # `duplicate: true` and re-sends the Bridge 1 message, so the loop starts on the retry.
    logger.exception("queue unavailable")
    return error_response(503, "a queue of the loop is unavailable, retry later")


def _targets_unverifiable(exc: TargetsUnverifiable) -> Answer:
    logger.exception("notification targets could not be checked")
    return error_response(503, "the targets could not be checked now, retry later")


def _unexpected(exc: Exception) -> Answer:
    # Nothing escapes the resolver (API Gateway would answer 502): logged with its traceback, answered 500.
    logger.exception("unhandled error", error_type=type(exc).__name__)
    return error_response(500, "internal error")


# The most specific class an exception is an instance of picks its handler (Powertools walks the MRO).
ERRORS: dict[type[Exception], Callable[[Any], Answer]] = {
    RequestValidationError: _invalid,
    InvalidDefinition: _invalid_definition,
    BadRequest: _bad_request,
    UnsupportedMediaType: _unsupported,
    ServiceError: _service_error,
    NotFound: _not_found,
    Conflict: _conflict,
    NotReady: _conflict,
    DatabaseUnavailable: _unavailable,
    DatabaseConflict: _database_conflict,
    StoreUnavailable: _breaker_store_unavailable,
    ValueTooLarge: _too_large,
    QueueUnavailable: _queue_unavailable,
    TargetsUnverifiable: _targets_unverifiable,
    Exception: _unexpected,
}


def map_errors(app: BoundaryResolver) -> BoundaryResolver:
    """Register the error map on `app`; returns it."""
    for exc_class, handler in ERRORS.items():
        app.exception_handler(exc_class)(handler)
    return app
