"""What every loop model shares: plain JSON out, the same model back in, and checked detail dicts.

Each model's `to_dict()` is plain JSON and `Model.model_validate(d)` rebuilds the model from it, so
a bridge stores dicts in event details and the next bridge reads a model back: never a dict-vs-object
guess (seed 000, issues 7 and 12). Free-form detail dicts are checked for JSON when they are set,
so a bad value fails where it is made, with its path, not later in the database.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, field_validator


def new_id(prefix: str) -> str:
    """A new id: the prefix and 16 hex digits (evt_, rec_, pol_, adj_, chk_)."""
    return f"{prefix}_{uuid4().hex[:16]}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def ensure_json_serializable(obj: Any, path: str = "details") -> Any:
    """Return a JSON-safe copy of `obj`.

    Datetimes and dates become ISO strings, enums their value, pydantic models and objects with
    `to_dict()` their dict; dicts, lists and tuples are copied recursively. Anything else (a set,
    bytes, an arbitrary object, a non-string key, NaN or infinity) raises TypeError naming the
    path of the offending value, e.g. ``details.match.items[2]``.
    """
    if isinstance(obj, Enum):  # before str: a (str, Enum) member is a str but must become its value
        return ensure_json_serializable(obj.value, path)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):  # json.dumps writes NaN, but it is not JSON and jsonb refuses it
            raise TypeError(f"{path}: float {obj!r} is not valid JSON")
        return obj
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if callable(getattr(obj, "to_dict", None)):  # before BaseModel: LoopStatus.to_dict adds fields
        return ensure_json_serializable(obj.to_dict(), path)
    if isinstance(obj, BaseModel):
        return ensure_json_serializable(obj.model_dump(mode="json"), path)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} of type {type(key).__name__} is not a string")
            out[key] = ensure_json_serializable(value, f"{path}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [ensure_json_serializable(item, f"{path}[{i}]") for i, item in enumerate(obj)]
    raise TypeError(f"{path}: object of type {type(obj).__name__} is not JSON serializable")


class LoopModel(BaseModel):
    """The base of the loop's models: validated on assignment, plain JSON out."""

    # Built on first use: every function imports these models, and each uses a few of them at most.
    model_config = ConfigDict(validate_assignment=True, defer_build=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the model; `Model.model_validate(d)` rebuilds it."""
        return self.model_dump(mode="json")


def json_field(*names: str) -> Any:
    """A before-validator that runs ensure_json_serializable over the named dict fields."""

    def check(cls: type, value: Any, info: Any) -> Any:
        return ensure_json_serializable({} if value is None else value, info.field_name)

    return field_validator(*names, mode="before")(classmethod(check))
