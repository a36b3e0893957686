"""The grouping's memos: dictionaries of pure functions' results, bounded by a count (cleared whole when
full; a result never depends on them)."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, most: int) -> V:
    """Store `value` under `key` (emptying the memo first when it holds `most`), and return it."""
    if len(memo) >= most:
        memo.clear()
    memo[key] = value
    return value
