"""At most one message per interval per channel, across every container: a "next free slot" per channel in
the kv table (reserved namespace `_slack_pace`), taken by compare-and-set.

A sender reads the channel's next slot, takes max(now, slot) for itself and writes slot + interval on
condition that nobody moved it meanwhile; a loser re-reads and takes the slot after the winner's. It then
sleeps until its slot. A slot further away than Settings.skill_max_wait_s is not taken: the call raises a
retryable error with the wait, so a Lambda does not idle through a long queue of messages.

Slack counts messages as they arrive. A message that took long to get there (a slow connection, a busy
network) arrives late in its slot, and the next one, sent on time, would follow it too closely: once a
message is out, `hold` moves the channel's next slot to at least its completion plus the interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from incident_loop.skills.errors import ExternalError
from incident_loop.skills.kvtable import KvTable

NAMESPACE = "_slack_pace"
ATTEMPTS = 20  # lost races before giving up; each loss means another sender got a slot
SLOT_TTL_S = 300  # the item outlives any slot it holds; an idle channel's item expires


def _next(kv: KvTable, tenant_id: str, channel: str) -> tuple[dict[str, Any] | None, float | None]:
    """The channel's item as stored (what a compare-and-set expects) and the next free slot it holds."""
    current = kv.get(tenant_id, NAMESPACE, channel)
    expected = current.value if current is not None else None
    return expected, (float(expected["next"]) if expected else None)


def reserve(kv: KvTable, tenant_id: str, channel: str, *, interval_s: float, max_wait_s: float,
            clock: Callable[[], float]) -> float:
    """Take this channel's next slot; the seconds to wait until it. Raises ExternalError (retryable) when
    the slot is more than `max_wait_s` away or the races keep being lost."""
    wait = 0.0
    for _ in range(ATTEMPTS):
        now = clock()
        expected, taken = _next(kv, tenant_id, channel)
        slot = max(now, taken) if taken is not None else now
        wait = slot - now
        if wait > max_wait_s:
            raise ExternalError(f"channel {channel} is paced to one message per {interval_s:g} s; the next slot "
                                f"is {wait:.1f} s away", code="rate_limited", retryable=True, retry_after_s=wait)
        won, _ = kv.compare_and_set(tenant_id, NAMESPACE, channel, expected, {"next": round(slot + interval_s, 3)},
                                    ttl_s=SLOT_TTL_S)
        if won:
            return wait
    raise ExternalError(f"channel {channel}: no pacing slot after {ATTEMPTS} tries", code="rate_limited",
                        retryable=True, retry_after_s=max(wait, interval_s))


def hold(kv: KvTable, tenant_id: str, channel: str, *, until: float) -> None:
    """After a message went out: this channel's next slot is at least `until` (when the message was done,
    plus the interval). Best effort: a lost race means another sender moved the slot on meanwhile."""
    for _ in range(ATTEMPTS):
        expected, taken = _next(kv, tenant_id, channel)
        if taken is not None and taken >= until:
            return
        won, _ = kv.compare_and_set(tenant_id, NAMESPACE, channel, expected, {"next": round(until, 3)},
                                    ttl_s=SLOT_TTL_S)
        if won:
            return
