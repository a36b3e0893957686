"""Skills (seed 004): typed, idempotent operations, the external ones behind the shared breaker.

    kv_store      get / set / delete / compare-and-set on DynamoDB, TTL, per tenant
    slack_send    incoming webhook or chat.postMessage, 1 message/s per channel
    webhook_send  Standard Webhooks signatures, key rotation, the spec's retry schedule, SSRF guard, 410
    voyage_embed  Voyage AI embeddings, batched to the API's limits, cached in the kv table

The contract the workflow runner codes against: base (SkillContext, Skill, IdempotentSkill, ExternalSkill),
errors, hashing, deterministic and registry. docs/skills.md describes them.
"""

from incident_loop.skills.base import ExternalSkill, IdempotentSkill, Skill, SkillContext
from incident_loop.skills.errors import (
    CircuitOpen,
    ExternalError,
    IdempotencyConflict,
    SizeLimitExceeded,
    SkillError,
    SkillInputError,
    UnknownSkill,
)
from incident_loop.skills.idempotency import register_lambda_context

__all__ = [
    "CircuitOpen", "ExternalError", "ExternalSkill", "IdempotencyConflict", "IdempotentSkill", "SizeLimitExceeded",
    "Skill", "SkillContext", "SkillError", "SkillInputError", "UnknownSkill", "register_lambda_context",
]
