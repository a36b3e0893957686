"""In-process fault helpers for the integration fault tests (the functions run in this process, on LocalApp).

The injectors that work on any process (refused, black hole, locks, kills) are in incident_loop_dev.faults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from incident_loop import db, settings


def reconfigure(**environ: str) -> None:
    """Set environment variables and start the functions' container afresh (settings, connection)."""
    os.environ.update(environ)
    settings.get_settings.cache_clear()
    db.reset_connection()


@contextmanager
def database_at(url: str) -> Iterator[None]:
    """The functions' DATABASE_URL points at `url` until the block ends."""
    good = os.environ["DATABASE_URL"]
    reconfigure(DATABASE_URL=url)
    try:
        yield
    finally:
        reconfigure(DATABASE_URL=good)


@contextmanager
def queue_deleted(app: Any, logical_id: str) -> Iterator[None]:
    """The template's queue is gone (deleted in moto) until the block ends; then created again, same URL."""
    url = app.queue_urls[logical_id]
    app.sqs.delete_queue(QueueUrl=url)
    try:
        yield
    finally:
        again = app.sqs.create_queue(QueueName=url.rsplit("/", 1)[-1])["QueueUrl"]
        assert again == url


def failed_records(response: Any) -> list[str]:
    """One entry per record a consumer failed: its batchItemFailures id or, when every record failed and
    Powertools failed the invocation (SQS then retries the whole batch), each record's error."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    if isinstance(response, BatchProcessingError):
        return [f"{kind.__name__}: {value}" for kind, value, _ in response.child_exceptions]
    assert isinstance(response, dict), f"the invocation failed instead of reporting its failures: {response!r}"
    return [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]


def invoke_batch(app: Any, function: str, event: dict[str, Any]) -> Any:
    """Invoke a consumer with an SQS event; what it answered, or the error it raised (as Lambda reports it)."""
    try:
        return app.invoke(function, event)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc
