"""The skills' AWS resources on moto (in-process or moto's server), as the template declares them, and
the skills' per-target breakers wired to them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from incident_loop.breaker import Breaker, DynamoBreakerStore, MemoryHistory, config_for, ensure_table
from incident_loop.breaker.config import SKILL_PREFIX
from incident_loop.skills import kvtable
from incident_loop.skills.retrying import with_metrics

KV_TABLE = "incident-loop-kv"
IDEMPOTENCY_TABLE = "incident-loop-idempotency"
BREAKERS_TABLE = "incident-loop-breakers"


def create_skill_tables(client: Any, kv: str = KV_TABLE, idempotency: str = IDEMPOTENCY_TABLE,
                        breakers: str = BREAKERS_TABLE) -> None:
    """The kv table (pk, TTL on expires_at), the idempotency table (id, TTL on expiration), the breakers table."""
    kvtable.ensure_table(client, kv)
    ensure_table(client, breakers)
    if idempotency not in client.list_tables()["TableNames"]:
        client.create_table(TableName=idempotency, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        client.update_time_to_live(TableName=idempotency,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})


def skill_breakers(client: Any, table: str = BREAKERS_TABLE, clock: Callable[[], float] | None = None,
                   history: MemoryHistory | None = None) -> Callable[[str], Breaker]:
    """breaker_for for a skill: one Breaker per target on `table`, seed 004's config, in-memory history."""
    made: dict[str, Breaker] = {}
    history = history or MemoryHistory()
    store = DynamoBreakerStore(table, client)

    def breaker_for(target: str) -> Breaker:
        if target not in made:
            name = f"{SKILL_PREFIX}{target}"
            extra = {"clock": clock} if clock is not None else {}
            made[target] = with_metrics(Breaker(name, config_for(name), store=store, history=history, **extra))
        return made[target]

    return breaker_for


def put_parameter(client: Any, name: str, value: str) -> str:
    """An SSM SecureString parameter (overwritten); its name."""
    client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    return name


def skill_tables_env(client: Any, suffix: str) -> dict[str, str]:
    """Fresh kv, idempotency and breakers tables named with `suffix`; the settings that point at them."""
    names = {"KV_TABLE": f"kv-{suffix}", "IDEMPOTENCY_TABLE": f"idempotency-{suffix}",
             "BREAKERS_TABLE": f"breakers-{suffix}"}
    create_skill_tables(client, names["KV_TABLE"], names["IDEMPOTENCY_TABLE"], names["BREAKERS_TABLE"])
    return names


def reset_skill_caches() -> None:
    """Forget what a warm container keeps (settings, clients, skills, secrets, breakers): after the environment
    changed, the next call starts as a cold container would."""
    from incident_loop import aws, breakers, settings
    from incident_loop.skills import registry, secrets

    settings.get_settings.cache_clear()
    aws.reset()
    registry.reset()
    secrets.reset()
    breakers.named.cache_clear()


@contextmanager
def serialized_item_writes() -> Iterator[None]:
    """Make moto apply conditional writes one at a time, as DynamoDB does for an item.

    moto evaluates a write's condition and applies it without a lock, so two threads can both pass the
    same condition; DynamoDB never lets that happen. Race tests run under this, so what they check is the
    conditions this code writes, not moto's threading.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")}

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
