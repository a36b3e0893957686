"""The skills by name: one instance per container, built on first use with the container's dependencies.

    from incident_loop.skills import registry

    result = registry.get("kv_store").execute({"op": "get", "key": "k"}, SkillContext(tenant_id="t"))
"""

from __future__ import annotations

import importlib
from functools import cache

from incident_loop.skills.base import Skill
from incident_loop.skills.errors import UnknownSkill

# name -> "module:class"; imported on first use, so a function that runs one skill loads only that one.
SKILLS: dict[str, str] = {
    "kv_store": "incident_loop.skills.kv_store:KvStoreSkill",
    "slack_send": "incident_loop.skills.slack_send:SlackSendSkill",
    "webhook_send": "incident_loop.skills.webhook_send:WebhookSendSkill",
    "voyage_embed": "incident_loop.skills.voyage_embed:VoyageEmbedSkill",
}

def names() -> tuple[str, ...]:
    """Every skill's name, in a stable order."""
    return tuple(SKILLS)


def skill_class(name: str) -> type[Skill]:
    """The class of a skill by name (UnknownSkill if there is none)."""
    if name not in SKILLS:
        raise UnknownSkill(f"unknown skill {name!r}; known: {', '.join(SKILLS)}")
    module, _, attr = SKILLS[name].partition(":")
    cls: type[Skill] = getattr(importlib.import_module(module), attr)
    return cls


@cache
def get(name: str) -> Skill:
    """The container's instance of a skill (UnknownSkill, a KeyError and a SkillInputError, if none)."""
    return skill_class(name)()


def reset() -> None:
    """Forget the instances (tests and local runs, after the settings or the environment changed)."""
    get.cache_clear()
