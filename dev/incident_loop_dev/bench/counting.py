"""Counting what code costs PostgreSQL and AWS while it runs: round trips, statements, connections, calls.

By instrumentation, not timing (the figures are exact and repeatable, whatever the machine):

* round trips: a statement outside a pipeline (BEGIN, COMMIT and SAVEPOINT included), a pipeline's
  sync, a fetch that waits for a pipeline's results, an executemany (one pipeline);
* statements: every statement sent, pipelined or not;
* AWS calls: botocore's before-call event on every client made while counting;
* connections: psycopg's Connection.connect.

Each is counted against `Counter.current` (a stage, say); nothing is counted while it is None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cost:
    """What one stage's function spent, over every batch it handled."""

    messages: int = 0
    invocations: int = 0
    round_trips: int = 0
    statements: int = 0
    connections: int = 0
    aws: dict[str, int] = field(default_factory=dict)

    def per_message(self) -> dict[str, Any]:
        n = max(self.messages, 1)
        return {
            "messages": self.messages, "invocations": self.invocations,
            "pg_round_trips_per_message": round(self.round_trips / n, 2),
            "pg_statements_per_message": round(self.statements / n, 2),
            "aws_calls_per_message": round(sum(self.aws.values()) / n, 2),
            "connections_per_message": round(self.connections / n, 2),
            "aws_calls": dict(sorted(self.aws.items())),
        }


class Counter:
    """Costs by stage; `current` names the stage whose function is running (None: nothing is counted)."""

    def __init__(self) -> None:
        self.costs: dict[str, Cost] = {}
        self.current: str | None = None
        self._quiet = threading.local()  # inside a counted operation: its inner steps are not counted again

    def cost(self) -> Cost | None:
        return None if self.current is None else self.costs.setdefault(self.current, Cost())

    def add(self, *, round_trips: int = 0, statements: int = 0, connections: int = 0, aws: str | None = None) -> None:
        cost = self.cost()
        if cost is None or getattr(self._quiet, "depth", 0):
            return
        cost.round_trips += round_trips
        cost.statements += statements
        cost.connections += connections
        if aws is not None:
            cost.aws[aws] = cost.aws.get(aws, 0) + 1

    @contextmanager
    def quiet(self) -> Iterator[None]:
        self._quiet.depth = getattr(self._quiet, "depth", 0) + 1
        try:
            yield
        finally:
            self._quiet.depth -= 1


def _patch(owner: Any, name: str, make: Callable[[Any], Any], undo: list[Callable[[], None]]) -> None:
    original = owner.__dict__[name]
    setattr(owner, name, make(original))
    undo.append(lambda: setattr(owner, name, original))


@contextmanager
def counting(counter: Counter) -> Iterator[Counter]:
    """Count psycopg's statements, round trips and connections, and botocore's calls, into `counter`."""
    import botocore.session
    import psycopg
    from psycopg._connection_base import BaseConnection
    from psycopg._pipeline_base import BasePipeline

    undo: list[Callable[[], None]] = []

    def execute(original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.add(statements=1, round_trips=0 if self._conn._pipeline else 1)
            with counter.quiet():
                return original(self, *args, **kwargs)
        return wrapper

    def executemany(original: Any) -> Any:
        def wrapper(self: Any, query: Any, params_seq: Any, *args: Any, **kwargs: Any) -> Any:
            params = list(params_seq)
            counter.add(statements=len(params), round_trips=0 if self._conn._pipeline else 1)
            with counter.quiet():
                return original(self, query, params, *args, **kwargs)
        return wrapper

    def command(original: Any) -> Any:  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter.add(statements=1, round_trips=0 if self._pipeline else 1)
            return original(self, *args, **kwargs)
        return wrapper

    def pipeline_wait(original: Any) -> Any:  # a sync, or a pipeline's exit: one wait for the server
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            inner = original(self, *args, **kwargs)

            def run() -> Any:
                counter.add(round_trips=1)
                with counter.quiet():
                    return (yield from inner)
            return run()
        return wrapper

    def fetch(original: Any) -> Any:  # a cursor waiting for a pipeline's results
        def wrapper(self: Any, *, flush: bool) -> Any:
            if flush and self.result_queue:
                counter.add(round_trips=1)
            return original(self, flush=flush)
        return wrapper

    def connect(original: Any) -> Any:
        def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
            counter.add(connections=1)
            return original.__func__(cls, *args, **kwargs)
        return classmethod(wrapper)

    def on_call(model: Any = None, **_: Any) -> None:
        counter.add(aws=f"{model.service_model.service_name}.{model.name}")

    def create_client(original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(self, *args, **kwargs)
            client.meta.events.register("before-call.*.*", on_call)
            return client
        return wrapper

    _patch(psycopg.Cursor, "execute", execute, undo)
    _patch(psycopg.Cursor, "executemany", executemany, undo)
    _patch(BaseConnection, "_exec_command", command, undo)
    _patch(BasePipeline, "_sync_gen", pipeline_wait, undo)
    _patch(BasePipeline, "_exit_gen", pipeline_wait, undo)
    _patch(BasePipeline, "_fetch_gen", fetch, undo)
    _patch(psycopg.Connection, "connect", connect, undo)
    undo.append(lambda connect=psycopg.connect: setattr(psycopg, "connect", connect))
    psycopg.connect = psycopg.Connection.connect  # the module's alias was bound at import
    _patch(botocore.session.Session, "create_client", create_client, undo)
    try:
        yield counter
    finally:
        for step in reversed(undo):
            step()
