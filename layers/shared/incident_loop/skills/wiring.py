"""The container's shared outbound pieces, made once and reused while warm."""

from __future__ import annotations

from functools import cache

from incident_loop.skills.transport import Urllib3Transport


@cache
def default_transport() -> Urllib3Transport:
    """The container's urllib3 transport (its connection pools are kept across warm invocations)."""
    return Urllib3Transport()
