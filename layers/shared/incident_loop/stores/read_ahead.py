"""What a unit of work's stores read ahead for a batch, kept for the one transaction they read it in.

A `*_many` read puts every row it was asked for here (None for the keys it did not find), and the
one-row reads that follow in the same transaction answer from it instead of asking PostgreSQL again.
A store that writes a row puts the new row here, or drops what it can no longer vouch for. The unit
of work clears it when a transaction begins and when it ends: nothing read ahead outlives the
transaction (and its locks) it was read in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

MISSING = object()


class ReadAhead:
    """Rows by (kind, key); a kind is one store's read (e.g. "incident", "policy_for_pattern")."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[Hashable, Any]] = {}

    def put(self, kind: str, key: Hashable, value: Any) -> None:
        """Remember what `kind` reads for `key` (None: there is no such row)."""
        self._kinds.setdefault(kind, {})[key] = value

    def put_all(self, kind: str, tenant_id: str, keys: Iterable[Hashable], found: dict[Any, Any]) -> None:
        """Remember a bulk read of one tenant's rows: each key's row in `found`, or None when not found."""
        for key in keys:
            self.put(kind, (tenant_id, key), found.get(key))

    def get(self, kind: str, key: Hashable) -> Any:
        """What was read ahead for `key`, or MISSING when nothing was (the caller asks the database)."""
        return self._kinds.get(kind, {}).get(key, MISSING)

    def drop_where(self, kind: str, stale: Callable[[Any], bool]) -> None:
        """Forget every key of `kind` whose row is stale."""
        entries = self._kinds.get(kind, {})
        for key in [k for k, row in entries.items() if stale(row)]:
            del entries[key]

    def drop(self, kind: str, key: Hashable = MISSING) -> None:
        """Forget one key of `kind`, or all of them."""
        if key is MISSING:
            self._kinds.pop(kind, None)
        else:
            self._kinds.get(kind, {}).pop(key, None)

    def clear(self) -> None:
        self._kinds.clear()
