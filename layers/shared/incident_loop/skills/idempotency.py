"""At most one effect per idempotency key: Powertools idempotency on the shared DynamoDB idempotency table.

The record's key is (tenant, skill, idempotency key), hashed by Powertools under the prefix `skill.<name>`;
the normalised arguments are its validation payload, so the same key with other arguments is refused
(IdempotencyValidationError -> IdempotencyConflict). A failed effect deletes its record (Powertools), so a
retry runs it again; a finished one is returned to every repeat (a hit).

An in-progress record must not outlive the call that wrote it, or a crashed call would block its key for
the whole expiry: it expires with the Lambda invocation (`register_lambda_context`) or, outside Lambda, after
the skill's own time budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer

from incident_loop.skills.errors import IdempotencyConflict, IdempotencyInProgress, SkillError
from incident_loop.skills.hashing import canonical_hash, canonical_json

# DynamoDB items stop at 400 KB; a larger result is stored as its hash and recomputed on a repeat
# (only skills whose effect is free to repeat, like a cached embedding, produce results this large).
STORED_RESULT_LIMIT = 300_000
OVERSIZE = "__skill_result_oversize__"

_lambda_context: ContextVar[Any] = ContextVar("skill_lambda_context", default=None)


def register_lambda_context(context: Any) -> None:
    """The current invocation's Lambda context: in-progress records expire when it times out."""
    _lambda_context.set(context)


@contextmanager
def lambda_context_of(context: Any) -> Iterator[None]:
    """register_lambda_context for the length of one invocation: the context is forgotten after it (an old one,
    run down, would otherwise stand for every later call in the process that registers none, as a skill called
    outside Lambda, refused by the time check for want of a second)."""
    token = _lambda_context.set(context)
    try:
        yield
    finally:
        _lambda_context.reset(token)


def invocation_left_s() -> float | None:
    """Seconds left in the registered Lambda invocation, or None outside one."""
    context = _lambda_context.get()
    return None if context is None else context.get_remaining_time_in_millis() / 1000


class _Budget:
    """Stands in for a Lambda context outside Lambda: the in-progress record lives `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.ms = int(seconds * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self.ms


class _Serializer(BaseIdempotencySerializer):
    def to_dict(self, data: Any) -> dict:
        if len(canonical_json(data).encode("utf-8")) > STORED_RESULT_LIMIT:
            return {OVERSIZE: canonical_hash(data)}
        return dict(data)

    def from_dict(self, data: dict) -> Any:
        return data


def default_persistence() -> BasePersistenceLayer:
    """A DynamoDB persistence layer on Settings.idempotency_table with the container's client.

    One per skill instance: Powertools keeps the key prefix on the layer, so a layer shared between skills
    running on different threads could hash one skill's key under another's prefix.
    """
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from incident_loop import aws
    from incident_loop.settings import get_settings

    return DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table, boto3_client=aws.dynamodb())


def run_once(*, persistence: BasePersistenceLayer, skill: str, tenant_id: str, key: str, args: dict[str, Any],
             effect: Callable[[], dict[str, Any]], expires_after_s: int,
             budget_s: float) -> tuple[dict[str, Any], bool]:
    """effect() at most once for (tenant, skill, key) with these args: (its result, whether it was stored)."""
    hits: list[bool] = []

    def on_hit(response: Any, record: Any) -> Any:
        hits.append(True)
        return response

    config = IdempotencyConfig(
        event_key_jmespath="[tenant_id, skill, key]", payload_validation_jmespath="args",
        raise_on_no_idempotency_key=True, expires_after_seconds=expires_after_s, hash_function="sha256",
        lambda_context=_lambda_context.get() or _Budget(budget_s), response_hook=on_hit)

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config,
                         output_serializer=_Serializer(), key_prefix=f"skill.{skill}")
    def once(request: dict[str, Any]) -> dict[str, Any]:
        return effect()

    request = {"tenant_id": tenant_id, "skill": skill, "key": key, "args": args}
    try:
        result = once(request=request)
    except IdempotencyValidationError as exc:
        raise IdempotencyConflict(f"idempotency key {key!r} was already used by {skill} with different "
                                  f"arguments") from exc
    except (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError) as exc:
        # inconsistent: the record went (deleted, expired) between Powertools' put and get; retryable, as in progress
        raise IdempotencyInProgress(f"{skill} with idempotency key {key!r} is still running") from exc
    except IdempotencyPersistenceLayerError as exc:
        raise SkillError(f"the idempotency store failed: {exc}", code="idempotency_unavailable",
                         retryable=True) from exc
    stored = bool(hits)
    if stored and isinstance(result, dict) and OVERSIZE in result:
        result = effect()  # too large to have been stored: recomputed (the skill's effect is free to repeat)
    return result, stored
