"""How the loop meets PostgreSQL and SQS unless it is given a unit of work: hand-offs by the registry's queues.

Services and the runner take `uow: UnitOfWork | None = None`; unit tests pass in-memory fakes.
"""

from __future__ import annotations

from typing import Any

from incident_loop.loop.registry import queue_url_for
from incident_loop.settings import Settings
from incident_loop.stores.ports import UnitOfWork
from incident_loop.stores.queues import SqsStageQueues
from incident_loop.stores.unit_of_work import PostgresUnitOfWork


def stage_queues(settings: Settings | None = None, client: Any | None = None) -> SqsStageQueues:
    """SQS, each envelope to the queue the registry names for its stage."""
    return SqsStageQueues(settings, client, url_for=queue_url_for)


def unit_of_work(uow: UnitOfWork | None = None) -> UnitOfWork:
    """`uow` itself, or PostgreSQL on the container's connection with hand-offs sent to SQS."""
    return uow if uow is not None else PostgresUnitOfWork(stage_queues())
