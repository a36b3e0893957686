"""Canonical JSON and its hash: the same value always gives the same bytes, whatever its key order.

The audit records `canonical_hash(args)` and `canonical_hash(result)`, and the replay verifier recomputes
them, so these two functions are the definition of "the same arguments" and "the same result".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """`obj` as JSON with sorted keys, compact separators and non-ASCII kept as is (UTF-8 when encoded)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_hash(obj: Any) -> str:
    """`"sha256:"` + the hex SHA-256 of canonical_json(obj) encoded as UTF-8."""
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
