"""The kv table (Settings.kv_table): small JSON values per (tenant, namespace, key), with TTL.

Key schema (the template declares it): partition key `pk` (S) = "<tenant>#<namespace>#<key>", no sort key;
TTL attribute `expires_at` (N, epoch seconds). Other attributes: tenant, namespace, key, value (canonical
JSON text), value_hash (its canonical_hash), version (N, +1 per write), updated_at (N).

DynamoDB deletes expired items lazily (often within days), so every read treats an item whose expires_at has
passed as absent, and compare-and-set treats it as absent too. Compare-and-set is one conditional write on
value_hash, so of two racing writers exactly one wins. Namespaces starting with "_" are reserved for the
skills' own records (webhook endpoints, embedding cache, Slack pacing); kv_store refuses them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from incident_loop.skills.errors import SizeLimitExceeded, SkillError, SkillInputError
from incident_loop.skills.hashing import canonical_hash, canonical_json

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 64 * 1024  # far under DynamoDB's 400 KB item limit, and cheap to read (16 RCUs at most)
MAX_TTL_S = 365 * 24 * 3600
NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # no '#': the partition key's separator
CONFLICT = "ConditionalCheckFailedException"
_LIVE = "(attribute_not_exists(expires_at) OR expires_at > :now)"


class KvUnavailable(SkillError):
    """DynamoDB could not be reached or refused the call."""

    code = "store_unavailable"
    retryable = True


@dataclass(frozen=True)
class KvItem:
    """A live value and its metadata."""

    value: Any
    version: int
    expires_at: int | None


def check_key(key: str) -> None:
    """SizeLimitExceeded (or SkillInputError) unless 1 <= len(key as UTF-8) <= MAX_KEY_BYTES."""
    size = len(key.encode("utf-8"))
    if size == 0:
        raise SkillInputError("key may not be empty")
    if size > MAX_KEY_BYTES:
        raise SizeLimitExceeded(f"key is {size} bytes; the limit is {MAX_KEY_BYTES} bytes (UTF-8)")


def encode_value(value: Any, limit: int = MAX_VALUE_BYTES) -> str:
    """The value as canonical JSON; SizeLimitExceeded if it is longer than `limit` bytes."""
    text = canonical_json(value)
    size = len(text.encode("utf-8"))
    if size > limit:
        raise SizeLimitExceeded(f"value is {size} bytes as JSON; the limit is {limit} bytes")
    return text


class KvTable:
    """The kv table, with an injectable client and clock (the container's client by default)."""

    def __init__(self, table: str | None = None, client: Any | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if table is None or client is None:
            from incident_loop import aws
            from incident_loop.settings import get_settings

            table = table or get_settings().kv_table
            client = client if client is not None else aws.dynamodb()
        self.table, self.client, self.clock = table, client, clock

    # ------------------------------------------------------------------ reads

    def get(self, tenant: str, namespace: str, key: str) -> KvItem | None:
        """The live item, or None (absent or expired)."""
        out = self._call("get_item", Key=self._key(tenant, namespace, key), ConsistentRead=True)
        return self._live(out.get("Item"))

    def get_many(self, tenant: str, namespace: str, keys: Iterable[str]) -> dict[str, KvItem]:
        """The live items among `keys` (100 per BatchGetItem; unprocessed keys asked again)."""
        wanted, found = list(dict.fromkeys(keys)), {}
        for start in range(0, len(wanted), 100):
            request = {self.table: {"Keys": [self._key(tenant, namespace, k) for k in wanted[start:start + 100]],
                                    "ConsistentRead": True}}
            for _ in range(5):
                out = self._call("batch_get_item", RequestItems=request, table_arg=False)
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = self._live(raw)
                    if item is not None:
                        found[raw["key"]["S"]] = item
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    # ------------------------------------------------------------------ writes

    def put(self, tenant: str, namespace: str, key: str, value: Any, ttl_s: int | None = None,
            limit: int = MAX_VALUE_BYTES) -> KvItem:
        """Write the value (replacing any), with a TTL or none."""
        names, values, expression = self._set(tenant, namespace, key, value, ttl_s, limit)
        out = self._call("update_item", Key=self._key(tenant, namespace, key), UpdateExpression=expression,
                         ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        return self._item(out["Attributes"])

    def put_many(self, tenant: str, namespace: str, entries: dict[str, Any], ttl_s: int | None = None) -> None:
        """Write many values (25 per BatchWriteItem); for caches, so versions start again at 1."""
        now = self.clock()
        items = [self._whole(tenant, namespace, key, value, ttl_s, now) for key, value in entries.items()]
        for start in range(0, len(items), 25):
            request = {self.table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
            for _ in range(5):
                out = self._call("batch_write_item", RequestItems=request, table_arg=False)
                request = out.get("UnprocessedItems") or {}
                if not request:
                    break

    def delete(self, tenant: str, namespace: str, key: str) -> bool:
        """Delete the key; whether a live value was there."""
        out = self._call("delete_item", Key=self._key(tenant, namespace, key), ReturnValues="ALL_OLD")
        return self._live(out.get("Attributes")) is not None

    def compare_and_set(self, tenant: str, namespace: str, key: str, expected: Any, value: Any,
                        ttl_s: int | None = None) -> tuple[bool, KvItem | None]:
        """Write `value` only if the live value equals `expected` (None: only if there is none).

        (True, the new item) or (False, the live item as it is now).
        """
        names, values, expression = self._set(tenant, namespace, key, value, ttl_s, MAX_VALUE_BYTES)
        if expected is None:
            condition = "attribute_not_exists(pk) OR (attribute_exists(expires_at) AND expires_at <= :now)"
        else:
            condition = f"value_hash = :expected AND {_LIVE}"
            values[":expected"] = {"S": canonical_hash(expected)}
        try:
            out = self.client.update_item(
                TableName=self.table, Key=self._key(tenant, namespace, key), UpdateExpression=expression,
                ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != CONFLICT:
                raise KvUnavailable(f"compare-and-set on {self.table}: {exc}") from exc
            return False, self._live(exc.response.get("Item"))
        except BotoCoreError as exc:
            raise KvUnavailable(f"compare-and-set on {self.table}: {exc}") from exc
        return True, self._item(out["Attributes"])

    # ------------------------------------------------------------------ items

    def _key(self, tenant: str, namespace: str, key: str) -> dict[str, Any]:
        if not tenant or "#" in tenant:
            raise SkillInputError("a tenant id is required and may not contain '#'")
        if not NAMESPACE.match(namespace):
            raise SkillInputError(f"namespace {namespace!r} must be 1-64 of A-Z a-z 0-9 _ . : -")
        check_key(key)
        return {"pk": {"S": f"{tenant}#{namespace}#{key}"}}

    def _set(self, tenant: str, namespace: str, key: str, value: Any, ttl_s: int | None,
             limit: int) -> tuple[dict[str, str], dict[str, Any], str]:
        text, now = encode_value(value, limit), self.clock()
        values: dict[str, Any] = {":t": {"S": tenant}, ":ns": {"S": namespace}, ":k": {"S": key}, ":v": {"S": text},
                                  ":h": {"S": canonical_hash(value)}, ":one": {"N": "1"},
                                  ":now": {"N": str(int(now))}}
        expression = ("SET tenant = :t, #ns = :ns, #k = :k, #v = :v, value_hash = :h, updated_at = :now "
                      "ADD version :one")
        if ttl_s is not None:
            values[":exp"] = {"N": str(self._expiry(ttl_s, now))}
            expression = expression.replace(", updated_at = :now", ", updated_at = :now, expires_at = :exp")
        else:
            expression += " REMOVE expires_at"
        return {"#ns": "namespace", "#k": "key", "#v": "value"}, values, expression

    def _whole(self, tenant: str, namespace: str, key: str, value: Any, ttl_s: int | None,
               now: float) -> dict[str, Any]:
        item = {**self._key(tenant, namespace, key), "tenant": {"S": tenant}, "namespace": {"S": namespace},
                "key": {"S": key}, "value": {"S": encode_value(value)}, "value_hash": {"S": canonical_hash(value)},
                "version": {"N": "1"}, "updated_at": {"N": str(int(now))}}
        if ttl_s is not None:
            item["expires_at"] = {"N": str(self._expiry(ttl_s, now))}
        return item

    @staticmethod
    def _expiry(ttl_s: int, now: float) -> int:
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise SkillInputError(f"ttl_seconds must be between 1 and {MAX_TTL_S}")
        return math.ceil(now + ttl_s)

    def _live(self, raw: dict[str, Any] | None) -> KvItem | None:
        if not raw:
            return None
        item = self._item(raw)
        if item.expires_at is not None and item.expires_at <= self.clock():
            return None  # expired: DynamoDB has not deleted it yet
        return item

    @staticmethod
    def _item(raw: dict[str, Any]) -> KvItem:
        expires = raw.get("expires_at", {}).get("N")
        return KvItem(value=json.loads(raw["value"]["S"]), version=int(raw.get("version", {}).get("N", "0")),
                      expires_at=int(expires) if expires is not None else None)

    def _call(self, operation: str, table_arg: bool = True, **kwargs: Any) -> dict[str, Any]:
        try:
            if table_arg:
                kwargs["TableName"] = self.table
            return dict(getattr(self.client, operation)(**kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise KvUnavailable(f"{operation} on {self.table}: {exc}") from exc


def ensure_table(client: Any, table: str) -> None:
    """Create the kv table with its TTL if it is missing (local runs, tests, benchmarks)."""
    from incident_loop import aws

    aws.ensure_table(client, table, "pk", ttl_attribute="expires_at")
