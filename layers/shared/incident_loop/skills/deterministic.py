"""Deterministic idempotency keys and retry delays: a replay of a workflow computes exactly what the run did.

Nothing here reads a clock or a global random generator; the jitter of a delay comes from a hash of the
idempotency key, so two calls with the same key wait the same, and calls with different keys spread out.
"""

from __future__ import annotations

import hashlib


def idempotency_key(workflow_run_id: str, op_index: int) -> str:
    """The idempotency key of one op of a workflow run: `"wf:" + 40 hex digits` of SHA-256(run id, index)."""
    if not workflow_run_id:
        raise ValueError("workflow_run_id is required for a derived idempotency key")
    if op_index < 0:
        raise ValueError("op_index must be >= 0")
    digest = hashlib.sha256(f"{workflow_run_id}\x1f{op_index}".encode()).hexdigest()
    return f"wf:{digest[:40]}"


def unit_interval(key: str, salt: str) -> float:
    """A number in [0, 1) derived from (key, salt) alone."""
    digest = hashlib.sha256(f"{key}\x1f{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def backoff_delays(key: str, attempts: int, base_s: float, cap_s: float) -> list[float]:
    """The waits before each of `attempts` retries: exponential from `base_s`, capped at `cap_s`, with
    "equal jitter" (half fixed, half drawn from the key), so a delay never collapses to zero."""
    if attempts < 0 or base_s < 0 or cap_s < 0:
        raise ValueError("attempts, base_s and cap_s must be >= 0")
    delays = []
    for attempt in range(attempts):
        ceiling = min(cap_s, base_s * 2**attempt)
        delays.append(round(ceiling / 2 + ceiling / 2 * unit_interval(key, f"backoff:{attempt}"), 6))
    return delays


def jittered(key: str, salt: str, delay_s: float, spread: float = 0.1) -> float:
    """`delay_s` moved by up to ±`spread` of itself, the same for the same (key, salt)."""
    return round(delay_s * (1 + spread * (2 * unit_interval(key, salt) - 1)), 6)
