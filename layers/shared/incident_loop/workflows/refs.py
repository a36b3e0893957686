"""Resolving a step's arguments: each `${steps.N.result...}` replaced by the recorded result it names.

The runner resolves with the results the run recorded so far; the replay verifier with the same recorded
results, so both compute the same arguments (and the same args hash) from the same audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_loop.schemas.workflows import Reference, template_parts
from incident_loop.skills.hashing import canonical_json


class UnresolvedReference(LookupError):
    """A reference names a step without a recorded result, or a key or index its result does not have."""

    code = "unresolved_reference"


def _lookup(ref: Reference, results: Mapping[int, Any]) -> Any:
    if ref.step not in results:
        raise UnresolvedReference(f"{ref}: step {ref.step} has no recorded result")
    value = results[ref.step]
    for depth, key in enumerate(ref.path):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            where = ".".join(["result", *ref.path[:depth]])
            raise UnresolvedReference(f"{ref}: {where} of step {ref.step} has no {key!r}")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _string(text: str, results: Mapping[int, Any]) -> Any:
    if "${" not in text:
        return text
    parts = template_parts(text)
    if len(parts) == 1 and isinstance(parts[0], Reference):
        return _lookup(parts[0], results)  # a whole-string reference keeps the value's JSON type
    return "".join(_text(_lookup(p, results)) if isinstance(p, Reference) else p for p in parts)


def resolve(args: Any, results: Mapping[int, Any]) -> Any:
    """`args` with every reference replaced from `results` (op_index -> recorded result); UnresolvedReference."""
    if isinstance(args, str):
        return _string(args, results)
    if isinstance(args, dict):
        return {key: resolve(value, results) for key, value in args.items()}
    if isinstance(args, list):
        return [resolve(value, results) for value in args]
    return args
