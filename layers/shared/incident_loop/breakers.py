"""The container's named breakers, built in one place: each with its config, its state in DynamoDB, its
history in PostgreSQL and the hooks every transition it wins runs (alerts for all; for costsim-v2 also
its gauges and a CostSim incident sent into the loop: `breaker_alerts.on_transition`).

    from incident_loop import breakers

    guard = breakers.named(breakers.COSTSIM_V2)
    target = breakers.for_skill("voyage")      # `skill:voyage`, seed 004's config
    own = breakers.for_skill("acme/webhook:hooks.example.com:443")  # a tenant's own target
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from incident_loop import aws
from incident_loop.breaker import (
    CATALOG_PERSIST,
    COSTSIM_V2,
    Breaker,
    DynamoBreakerStore,
    Transition,
    config_for,
)
from incident_loop.breaker.config import SKILL_PREFIX
from incident_loop.stores.breaker_history import PostgresHistory

__all__ = ["CATALOG_PERSIST", "COSTSIM_V2", "HOOKS", "for_skill", "named"]


def on_transition(t: Transition) -> None:
    """Alerts for every breaker, an incident for CostSim (incident_loop.breaker_alerts). Imported at the first
    transition: most containers never see one, and need not load the alert models at every cold start."""
    from incident_loop.breaker_alerts import on_transition as announce

    announce(t)


# What every transition a breaker of this container wins sets off, after its metric, log line and history row.
HOOKS: tuple[Callable[[Transition], None], ...] = (on_transition,)


# Breakers a container keeps wired: the skill breakers of tenants' own targets are one per tenant and target.
MAX_NAMED = 4096


@lru_cache(maxsize=MAX_NAMED)
def named(name: str) -> Breaker:
    """The container's breaker of that name (config_for(name)), wired once; warm invocations reuse it (the
    MAX_NAMED used last: its state lives in DynamoDB, so one wired again reads it there)."""
    return Breaker(name, config_for(name), store=DynamoBreakerStore(client=aws.dynamodb()),
                   history=PostgresHistory(), on_transition=HOOKS)


def for_skill(target: str) -> Breaker:
    """The breaker guarding one skill target (`skill:<target>`)."""
    return named(f"{SKILL_PREFIX}{target}")
