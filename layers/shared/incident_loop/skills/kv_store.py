"""kv_store: get / set / delete / compare-and-set of JSON values, per tenant and namespace, with optional TTL.

    {"op": "set", "key": "user:1", "value": {"n": 1}, "ttl_seconds": 3600}
    {"op": "get", "key": "user:1"}                        -> {"found": true, "value": {"n": 1}, ...}
    {"op": "cas", "key": "user:1", "expected": {"n": 1}, "value": {"n": 2}}   -> {"swapped": true, ...}
    {"op": "cas", "key": "lock", "expected": null, "value": "me"}              (only if absent)
    {"op": "delete", "key": "user:1"}                     -> {"found": true} if it was there

Values are any JSON except null (null means "absent" to compare-and-set), at most 64 KiB as canonical
JSON; keys at most 512 bytes; namespaces 1-64 of [A-Za-z0-9_.:-], not starting with "_" (reserved).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from incident_loop.skills.base import IdempotentSkill, SkillContext
from incident_loop.skills.errors import SkillInputError
from incident_loop.skills.kvtable import MAX_TTL_S, KvItem, check_key, encode_value


class KvInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["get", "set", "delete", "cas"]
    namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    key: str
    value: Any = None
    expected: Any = None
    ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_S)

    @model_validator(mode="after")
    def _op_arguments(self) -> KvInput:
        if self.op in ("set", "cas") and self.value is None:
            raise ValueError(f"{self.op} needs a value (null is not a value; use delete)")
        if self.op in ("get", "delete") and (self.value is not None or self.ttl_seconds is not None):
            raise ValueError(f"{self.op} takes no value or ttl_seconds")
        if self.op != "cas" and self.expected is not None:
            raise ValueError("expected is for cas only")
        return self


class KvOutput(BaseModel):
    op: str
    namespace: str
    key: str
    found: bool  # get/delete: a live value was there; set: true; cas: a live value is there now
    value: Any = None  # get: the value; set: the value written; cas: the value now (the winner's, if it lost)
    swapped: bool | None = None  # cas only
    expires_at: int | None = None  # epoch seconds, when the value has a TTL


class KvStoreSkill(IdempotentSkill):
    """Key-value storage on the kv table (kvtable.py), namespaced per tenant."""

    name: ClassVar[str] = "kv_store"
    version: ClassVar[str] = "1.0.0"
    Input: ClassVar[type[BaseModel]] = KvInput
    Output: ClassVar[type[BaseModel]] = KvOutput
    deterministic: ClassVar[bool] = True

    def parse(self, args: Any) -> BaseModel:
        data = super().parse(args)
        assert isinstance(data, KvInput)
        check_key(data.key)  # size limits before any call, with their own error
        for value in (data.value, data.expected):
            if value is not None:
                encode_value(value)
        if data.namespace.startswith("_"):
            raise SkillInputError("namespaces starting with '_' are reserved")
        return data

    def run(self, data: KvInput, ctx: SkillContext) -> KvOutput:
        tenant, ns, key = ctx.tenant_id, data.namespace, data.key
        out: dict[str, Any] = {"op": data.op, "namespace": ns, "key": key}
        if data.op == "get":
            return self._output(out, self.kv.get(tenant, ns, key))
        if data.op == "delete":
            return KvOutput(**out, found=self.kv.delete(tenant, ns, key))
        if data.op == "set":
            return self._output(out, self.kv.put(tenant, ns, key, data.value, data.ttl_seconds))
        swapped, item = self.kv.compare_and_set(tenant, ns, key, data.expected, data.value, data.ttl_seconds)
        return self._output(out, item, swapped=swapped)

    @staticmethod
    def _output(out: dict[str, Any], item: KvItem | None, swapped: bool | None = None) -> KvOutput:
        if item is None:
            return KvOutput(**out, found=False, swapped=swapped)
        return KvOutput(**out, found=True, value=item.value, swapped=swapped, expires_at=item.expires_at)
