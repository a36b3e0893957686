"""How a breaker behaves (trip rule, cooldown, probes, read cache, fail mode), and the breakers by name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from incident_loop.breaker.rules import AnyOf, ConsecutiveFailures, Drift, TripRule

COSTSIM_V2 = "costsim-v2"  # seed 001: guards CostSim's V2 simulator
CATALOG_PERSIST = "catalog-persist"  # seed 002: guards failure persistence
SKILL_PREFIX = "skill:"  # seed 004: one per skill target, `skill:<target>`
# A target that is one tenant's own (its webhook endpoint, its Slack channel or incoming webhook) has a breaker
# per tenant, `skill:<tenant>/<target>`: hosts are shared (a webhook platform, hooks.slack.com), and one tenant's
# failing endpoint must not refuse another tenant's calls. A tenant id never holds "/" (auth.tokens).
TENANT_SCOPE = "/"


def skill_target(target: str, tenant_id: str | None = None) -> str:
    """The target a skill breaker is named after: `target`, or `<tenant>/<target>` for a tenant's own."""
    return f"{tenant_id}{TENANT_SCOPE}{target}" if tenant_id else target


def split_skill_target(target: str) -> tuple[str, str | None]:
    """(target, tenant) of a skill breaker's target (`skill_target`'s inverse): the tenant None when shared."""
    tenant, scoped, own = target.rpartition(TENANT_SCOPE)  # a target never holds "/": the tenant is all before it
    return (own, tenant) if scoped else (target, None)


class FailMode(str, Enum):
    """What allow() answers when DynamoDB cannot be reached."""

    OPEN = "open"  # let calls through (seed 001's choice for CostSim: no false-positive disables)
    CLOSED = "closed"  # refuse calls


@dataclass(frozen=True)
class BreakerConfig:
    """How one breaker behaves. Times in seconds."""

    rule: TripRule = field(default_factory=ConsecutiveFailures)
    cooldown_s: float = 60.0
    half_open_probes: int = 1
    probe_timeout_s: float = 30.0  # a HALF_OPEN probe that never reports is presumed lost after this
    cache_ttl_s: float = 1.0
    fail_mode: FailMode = FailMode.OPEN

    def __post_init__(self) -> None:
        # A value DynamoDB cannot store (inf, NaN) failed every trip write, logged as "store unavailable",
        # and the breaker never opened: refused here, where the configuration is written.
        for name in ("cooldown_s", "probe_timeout_s"):
            _positive(name, getattr(self, name))
        if not (math.isfinite(self.cache_ttl_s) and self.cache_ttl_s >= 0):
            raise ValueError(f"cache_ttl_s must be a finite number of seconds >= 0, not {self.cache_ttl_s!r}")
        if self.half_open_probes < 1:
            raise ValueError(f"half_open_probes must be at least 1, not {self.half_open_probes!r}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")


# The breakers the loop uses. CostSim's cooldown is this project's choice (the seed does not state one).
KNOWN: dict[str, BreakerConfig] = {
    COSTSIM_V2: BreakerConfig(rule=AnyOf((Drift(), ConsecutiveFailures(5, None))), cooldown_s=300.0),
    CATALOG_PERSIST: BreakerConfig(rule=ConsecutiveFailures(5, 60.0), cooldown_s=60.0),
}
SKILL_DEFAULT = BreakerConfig(rule=ConsecutiveFailures(5, 60.0), cooldown_s=60.0)  # seed 004, per target


def config_for(name: str) -> BreakerConfig:
    """The configuration of a breaker by name (`skill:<target>` breakers share seed 004's)."""
    if name in KNOWN:
        return KNOWN[name]
    return SKILL_DEFAULT if name.startswith(SKILL_PREFIX) else BreakerConfig()
