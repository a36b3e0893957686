"""The skill interface (seed 004): a name, a version, a pydantic Input and Output, and execute().

    Skill            validates args into Input, runs, returns Output as JSON-ready data; counted and timed
    IdempotentSkill  at most one effect per idempotency key (skills/idempotency.py)
    ExternalSkill    leaves the system: per-target breaker, bounded timeouts, seeded retries (skills/retrying.py)

Dependencies (stores, transport, breakers, secrets, clock) are optional constructor arguments; the defaults
are the container's own, made on first use.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from pydantic import BaseModel, ValidationError

import incident_loop.skills.metrics as metrics
from incident_loop.breaker import Breaker
from incident_loop.breaker.config import skill_target
from incident_loop.settings import Settings, get_settings
from incident_loop.skills.deterministic import backoff_delays, idempotency_key
from incident_loop.skills.errors import SkillError, SkillInputError
from incident_loop.skills.idempotency import default_persistence, run_once
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.retrying import Caller, Delivered, shared_breaker
from incident_loop.skills.transport import HttpRequest, Transport


@dataclass(frozen=True)
class SkillContext:
    """Who calls and under which idempotency key (given, or derived from the workflow run and op index)."""

    tenant_id: str
    idempotency_key: str | None = None
    workflow_run_id: str | None = None
    op_index: int | None = None

    def key(self) -> str | None:
        """The effective idempotency key, or None when the call has none (then it is not deduplicated)."""
        if self.idempotency_key:
            return self.idempotency_key
        if self.workflow_run_id and self.op_index is not None:
            return idempotency_key(self.workflow_run_id, self.op_index)
        return None


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line: `field: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors())


class Skill(ABC):
    """One typed operation. Subclasses set the class attributes and implement run()."""

    name: ClassVar[str]
    version: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    deterministic: ClassVar[bool]  # True: the same args (and state) give the same output; replay compares hashes

    def __init__(self, *, settings: Settings | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, kv: KvTable | None = None) -> None:
        self.settings = settings or get_settings()
        self.clock, self.sleep = clock, sleep
        self._kv = kv

    @property
    def kv(self) -> KvTable:
        """The kv table (the container's by default): kv_store's data, and the other skills' own records."""
        if self._kv is None:
            self._kv = KvTable(clock=self.clock)
        return self._kv

    def execute(self, args: Mapping[str, Any], ctx: SkillContext) -> dict[str, Any]:
        """Validate `args` into Input (SkillInputError), run, return Output as JSON-ready data."""
        started, status, code = time.perf_counter(), "failure", None
        try:
            if not ctx.tenant_id or "#" in ctx.tenant_id:
                raise SkillInputError("a tenant id is required and may not contain '#'")
            result = self._execute(self.parse(args), ctx)
            status = "success"
            return result
        except SkillError as exc:
            code = exc.code
            raise
        except Exception:
            code = "internal_error"
            raise
        finally:
            metrics.execution(self.name, status, (time.perf_counter() - started) * 1000, tenant_id=ctx.tenant_id,
                              code=code)

    def parse(self, args: Mapping[str, Any]) -> BaseModel:
        """`args` as this skill's Input; a validation failure is a SkillInputError naming the fields."""
        if not isinstance(args, Mapping):
            raise SkillInputError(f"{self.name} takes an object of arguments, not {type(args).__name__}")
        try:
            return self.Input.model_validate(dict(args))
        except ValidationError as exc:
            raise SkillInputError(f"{self.name}: {describe(exc)}") from exc

    def _execute(self, data: BaseModel, ctx: SkillContext) -> dict[str, Any]:
        return self.dump(self.run(data, ctx))

    def dump(self, output: BaseModel) -> dict[str, Any]:
        """The Output as JSON-ready data (validated, in case run() built it loosely)."""
        return self.Output.model_validate(output).model_dump(mode="json")

    @abstractmethod
    def run(self, data: Any, ctx: SkillContext) -> BaseModel:
        """Perform the skill on validated input; return an Output."""


class IdempotentSkill(Skill):
    """At most one effect per idempotency key: a repeat returns the stored result (a hit); the same key with
    other arguments raises IdempotencyConflict. Without a key the call simply runs."""

    budget_s: ClassVar[float] = 60.0  # how long an in-progress record may block its key outside Lambda

    def __init__(self, *, persistence: BasePersistenceLayer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._persistence = persistence

    @property
    def persistence(self) -> BasePersistenceLayer:
        """The idempotency store (DynamoDB by default, made on first use)."""
        if self._persistence is None:
            self._persistence = default_persistence()
        return self._persistence

    def _execute(self, data: BaseModel, ctx: SkillContext) -> dict[str, Any]:
        key = ctx.key()
        if key is None:
            return super()._execute(data, ctx)
        args = data.model_dump(mode="json")
        try:
            result, hit = run_once(persistence=self.persistence, skill=self.name, tenant_id=ctx.tenant_id, key=key,
                                   args=args, effect=lambda: super(IdempotentSkill, self)._execute(data, ctx),
                                   expires_after_s=self.settings.skill_idempotency_expiry_s,
                                   budget_s=self.call_budget_s())
        except SkillError as exc:
            if exc.code == "idempotency_conflict":
                metrics.idempotency(self.name, hit=False, tenant_id=ctx.tenant_id)
            raise
        if hit:
            metrics.idempotency(self.name, hit=True, tenant_id=ctx.tenant_id)
        return result

    def call_budget_s(self) -> float:
        """The longest one call of this skill may take."""
        return self.budget_s


class ExternalSkill(IdempotentSkill):
    """A skill whose effect leaves the system: every request goes through the target's breaker (the shared
    DynamoDB breaker, `skill:<target>`, or `skill:<tenant>/<target>` for a tenant's own target), with bounded
    timeouts and deterministic retries (retrying.py)."""

    backoff_base_s: ClassVar[float] = 0.5
    backoff_cap_s: ClassVar[float] = 8.0

    def __init__(self, *, transport: Transport | None = None, breaker_for: Callable[[str], Breaker] | None = None,
                 secret_source: Callable[[str], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transport = transport
        self.breaker_for = breaker_for or shared_breaker
        self._secret_source = secret_source

    @property
    def transport(self) -> Transport:
        """The outbound HTTP transport (the container's urllib3 one by default)."""
        if self._transport is None:
            from incident_loop.skills.wiring import default_transport

            self._transport = default_transport()
        return self._transport

    def secret(self, name: str) -> str:
        """A secret by SSM parameter name or Secrets Manager ARN (Powertools Parameters, cached)."""
        if self._secret_source is None:
            from incident_loop.skills.secrets import fetch

            self._secret_source = fetch
        return self._secret_source(name)

    def tenant_secret(self, name: str, ctx: SkillContext) -> str:
        """A secret the call's arguments name: only one of the calling tenant's own (skills.secrets.tenant_owns),
        never the deployment's or another tenant's. SkillInputError otherwise, naming the parameter only."""
        from incident_loop.skills.secrets import tenant_owns

        if not tenant_owns(name, ctx.tenant_id):
            raise SkillInputError(f"secret {name!r} is not one of the tenant's own: a call may name only "
                                  f"incident-loop/<stage>/tenants/{ctx.tenant_id}/...")
        return self.secret(name)

    def call(self, target: str, build: Callable[[int], HttpRequest], key: str | None,
             delays: list[float] | None = None, *, tenant_id: str | None = None) -> Delivered:
        """One logical call to `target`: build(attempt) sent until it succeeds or may not be retried.

        The waits come from the idempotency key (the same key waits the same), unless `delays` are given.
        `tenant_id`: the target is that tenant's own (its endpoint, its channel), and so is its breaker
        (`skill:<tenant>/<target>`, breaker.config.skill_target): its failures refuse no other tenant's calls.
        """
        if delays is None:
            delays = backoff_delays(key or "", self.settings.skill_max_attempts - 1, self.backoff_base_s,
                                    self.backoff_cap_s)
        caller = Caller(self.transport, self.breaker_for, self.settings, sleep=self.sleep, clock=self.clock)
        return caller.call(skill_target(target, tenant_id), build, delays)

    def call_budget_s(self) -> float:
        s = self.settings
        per_attempt = s.skill_connect_timeout_s + s.skill_read_timeout_s + s.skill_max_wait_s
        return s.skill_max_attempts * per_attempt + 5.0
