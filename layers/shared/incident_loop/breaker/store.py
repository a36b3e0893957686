"""Breaker state in DynamoDB: one item per breaker name, every change a single conditional write.

Transitions replace the whole item on condition `version = :read` (and write version + 1); outcomes that
do not change the state are atomic ADD/SET on the same condition, so counters are exact and a counter
update can never land on a state it was not meant for. Item creation is a put on attribute_not_exists.
Every conditional write asks for ReturnValuesOnConditionCheckFailure=ALL_OLD: a loser learns the state
the winner wrote from its own failed call, without a second read.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from incident_loop import aws
from incident_loop.breaker.state import BreakerRecord
from incident_loop.settings import get_settings

CONFLICT = "ConditionalCheckFailedException"


class StoreUnavailable(RuntimeError):
    """DynamoDB could not be reached or refused the call (anything but a failed condition)."""


@dataclass(frozen=True)
class WriteResult:
    """`ok`: the condition held. `record`: the item as written, or (when not ok) as it is now."""

    ok: bool
    record: BreakerRecord | None


class BreakerStore(Protocol):
    """What the breaker needs of its state store."""

    def get(self, name: str) -> BreakerRecord | None: ...

    def create(self, record: BreakerRecord) -> WriteResult: ...

    def replace(self, record: BreakerRecord, expected_version: int) -> WriteResult: ...

    def add_failure(self, name: str, version: int) -> WriteResult: ...

    def reset_failures(self, name: str, version: int) -> WriteResult: ...

    def admit_probe(self, name: str, version: int, limit: int) -> WriteResult: ...

    def probe_succeeded(self, name: str, version: int) -> WriteResult: ...

    def put_samples(self, name: str, version: int, seq: int, samples: tuple[float, ...],
                    consecutive_drift_failures: int) -> WriteResult: ...


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


class DynamoBreakerStore:
    """BreakerStore on the breakers table (partition key `name`, string); the container's client by default."""

    def __init__(self, table: str | None = None, client: Any | None = None) -> None:
        self.table = table or get_settings().breakers_table
        self.client = client if client is not None else aws.dynamodb()

    def _call(self, operation: str, **kwargs: Any) -> WriteResult | dict[str, Any]:
        try:
            return dict(getattr(self.client, operation)(TableName=self.table, **kwargs))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == CONFLICT:
                item = exc.response.get("Item")
                return WriteResult(False, BreakerRecord.from_item(item) if item else None)
            raise StoreUnavailable(f"{operation} on {self.table}: {error.get('Code')}: {error.get('Message')}") \
                from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{operation} on {self.table}: {type(exc).__name__}: {exc}") from exc

    def _update(self, name: str, version: int, expression: str, values: dict[str, Any],
                condition: str = "#v = :v") -> WriteResult:
        out = self._call("update_item", Key={"name": {"S": name}}, UpdateExpression=expression,
                         ConditionExpression=condition, ExpressionAttributeNames={"#v": "version"},
                         ExpressionAttributeValues={":v": _n(version), **values}, ReturnValues="ALL_NEW",
                         ReturnValuesOnConditionCheckFailure="ALL_OLD")
        if isinstance(out, WriteResult):
            return out
        return WriteResult(True, BreakerRecord.from_item(out["Attributes"]))

    def all(self) -> list[BreakerRecord]:
        """Every breaker of the table (a scan, page by page: a few items, one per breaker)."""
        records: list[BreakerRecord] = []
        start: dict[str, Any] | None = None
        while True:
            out = self._call("scan", ConsistentRead=True, **({"ExclusiveStartKey": start} if start else {}))
            assert isinstance(out, dict)
            records.extend(BreakerRecord.from_item(item) for item in out.get("Items", []))
            start = out.get("LastEvaluatedKey")
            if not start:
                return records

    def get(self, name: str) -> BreakerRecord | None:
        out = self._call("get_item", Key={"name": {"S": name}}, ConsistentRead=True)
        assert isinstance(out, dict)
        return BreakerRecord.from_item(out["Item"]) if "Item" in out else None

    def create(self, record: BreakerRecord) -> WriteResult:
        out = self._call("put_item", Item=record.to_item(), ConditionExpression="attribute_not_exists(#n)",
                         ExpressionAttributeNames={"#n": "name"}, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        return out if isinstance(out, WriteResult) else WriteResult(True, record)

    def replace(self, record: BreakerRecord, expected_version: int) -> WriteResult:
        out = self._call("put_item", Item=record.to_item(), ConditionExpression="#v = :v",
                         ExpressionAttributeNames={"#v": "version"},
                         ExpressionAttributeValues={":v": _n(expected_version)},
                         ReturnValuesOnConditionCheckFailure="ALL_OLD")
        return out if isinstance(out, WriteResult) else WriteResult(True, record)

    def add_failure(self, name: str, version: int) -> WriteResult:
        return self._update(name, version, "ADD consecutive_failures :one", {":one": _n(1)})

    def reset_failures(self, name: str, version: int) -> WriteResult:
        return self._update(name, version, "SET consecutive_failures = :zero", {":zero": _n(0)})

    def admit_probe(self, name: str, version: int, limit: int) -> WriteResult:
        return self._update(name, version, "ADD probes_admitted :one", {":one": _n(1), ":limit": _n(limit)},
                            condition="#v = :v AND probes_admitted < :limit")

    def probe_succeeded(self, name: str, version: int) -> WriteResult:
        return self._update(name, version, "ADD probes_succeeded :one", {":one": _n(1)})

    def put_samples(self, name: str, version: int, seq: int, samples: tuple[float, ...],
                    consecutive_drift_failures: int) -> WriteResult:
        window = BreakerRecord(name=name, drift_samples=samples).to_item()["drift_samples"]
        return self._update(
            name, version, "SET drift_samples = :samples, drift_seq = :next, consecutive_drift_failures = :cdf",
            {":samples": window, ":seq": _n(seq), ":next": _n(seq + 1), ":cdf": _n(consecutive_drift_failures)},
            condition="#v = :v AND drift_seq = :seq")


class CachedRecord:
    """One breaker's item as this process last saw it; read through the store at most once per `ttl_s`."""

    def __init__(self, store: BreakerStore, name: str, ttl_s: float, clock: Callable[[], float],
                 worker: str) -> None:
        self.store, self.name, self.ttl_s, self.clock, self.worker = store, name, ttl_s, clock, worker
        self.current: BreakerRecord | None = None
        self._at = -math.inf
        self._lock = threading.Lock()

    def get(self, fresh: bool = False) -> BreakerRecord:
        """The cached record, or one GetItem (creating the item, CLOSED at version 0, on first use)."""
        with self._lock:
            if not fresh and self.current is not None and self.clock() - self._at < self.ttl_s:
                return self.current
        record = self.store.get(self.name)
        if record is None:
            created = BreakerRecord(name=self.name, reason="created", changed_by=self.worker, changed_at=self.clock())
            return self.settle(self.store.create(created))
        return self.remember(record)

    def settle(self, result: WriteResult) -> BreakerRecord:
        """The record a write left us with; re-read only when a failed write did not return the item."""
        if result.record is not None:
            return self.remember(result.record)
        return self.get(fresh=True)

    def remember(self, record: BreakerRecord) -> BreakerRecord:
        """Cache what a read or a write returned (never an older version over a newer one)."""
        with self._lock:
            if self.current is None or record.version >= self.current.version:
                self.current, self._at = record, self.clock()
        return record


def ensure_table(client: Any, table: str) -> None:
    """Create the breakers table if it is missing (local runs and benchmarks; AWS gets it from the template)."""
    aws.ensure_table(client, table, "name")
