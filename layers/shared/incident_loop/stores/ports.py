"""The loop's stores as interfaces, and the unit of work that hands them out.

Bridges and services use these and nothing below them: PostgreSQL implements them in this package
(unit_of_work.py, one transaction on one connection), in-memory fakes in the unit tests. Every
method that reads or writes a tenant's rows takes the tenant; the unit of work also scopes its
transaction to one (row-level security), so a wrong tenant finds nothing.

A batch of messages is one transaction (UnitOfWork.batch): `*_many`/`*_all` read or write for all of
them at once, and what they read answers the one-row reads that follow in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: importing a port must not load the matcher or the models' modules
    from incident_loop.grouping.matcher import MatchDecision, PatternCandidate
    from incident_loop.schemas.envelope import Envelope
    from incident_loop.schemas.incident import IncidentIn
    from incident_loop.schemas.loop.enums import PolicyMode
    from incident_loop.schemas.loop.events import HumanCheckpoint, LoopEvent
    from incident_loop.schemas.loop.policy import PolicyRule, RoutingAdjustment
    from incident_loop.schemas.loop.results import RecoverySuggestion
    from incident_loop.schemas.notifications import NotificationEvent, NotificationTargets
    from incident_loop.stores.records import Progress, StageRecord

Row = dict[str, Any]


class IncidentStore(Protocol):
    """Reported incidents, once per (tenant, incident key)."""

    def insert(self, incident_id: str, tenant_id: str, incident: IncidentIn) -> tuple[str, bool]:
        """Store the incident unless its key is known: (its id, whether it was new)."""
        ...

    def insert_many(self, tenant_id: str, incidents: Sequence[tuple[str, IncidentIn]]) -> list[tuple[str, bool]]:
        """insert() for each (new id, incident), in one statement; (id, new) for each, in order."""
        ...

    def get(self, tenant_id: str, incident_id: str) -> Row | None: ...

    def get_many(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, Row]:
        """The incidents found, by id; get() answers from them for the rest of the transaction."""
        ...

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> None: ...


class LoopStore(Protocol):
    """loop_events (what each stage did, once per key) and loop_traces (where each loop stands)."""

    def lock(self, incident_id: str) -> None:
        """Serialise work on one incident for the rest of the transaction."""
        ...

    def lock_all(self, incident_ids: Collection[str]) -> None:
        """lock() every incident, in one statement and one order (two batches never deadlock)."""
        ...

    def start(self, loop_id: str, incident_id: str, tenant_id: str) -> str:
        """Open the incident's loop unless it has one; returns the loop's id."""
        ...

    def start_all(self, tenant_id: str, loops: Sequence[tuple[str, str]]) -> dict[str, str]:
        """start() for each (new loop id, incident id) of the tenant; the loop id of each incident."""
        ...

    def progress(self, tenant_id: str, incident_ids: Collection[str], key: str) -> Mapping[str, Progress]:
        """Each incident's Progress for the event key (read when first looked at, or with a read before)."""
        ...

    def result(self, tenant_id: str, incident_id: str, key: str) -> Row | None:
        """The details recorded under an event key, or None."""
        ...

    def record(self, event: LoopEvent, *, key: str | None = None, completed: bool = True, blocked: bool = False,
               pending_checkpoints: list[str] | None = None, loop_complete: bool = False) -> bool:
        """Append the event (once per key) and move the trace; False when it was already recorded."""
        ...

    def record_all(self, records: Sequence[StageRecord]) -> None:
        """record() each (at most one per incident), in one statement whose answer nobody waits for."""
        ...

    def trace(self, tenant_id: str, incident_id: str) -> Row | None: ...

    def first_complete(self, tenant_id: str) -> Row | None:
        """The tenant's first loop to complete (loop_id, incident_id), or None."""
        ...


class PatternStore(Protocol):
    """Failure patterns: Bridge 1's PatternIndex (by_signature, candidates) and what it records."""

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None: ...

    def by_signatures(self, tenant_id: str, signatures: Collection[str]) -> dict[str, PatternCandidate]:
        """by_signature() for each, at once (the hits, by signature); later lookups answer from them."""
        ...

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]: ...

    def lock_keys(self, tenant_id: str, keys: Collection[tuple[str, str]], shared: bool = False) -> None:
        """Take the candidate keys' locks ((error type, key) each) for the transaction, in one order for every
        worker: a batch that takes them as its messages come deadlocks with one that has them in reverse.
        `shared`: with other sharers, but never with a writer (a merge) of the keys' patterns."""
        ...

    def get(self, tenant_id: str, pattern_id: str) -> Row | None:
        """The pattern's row (id, category, signature, template, first_incident_id, ...), or None."""
        ...

    def get_many(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, Row]:
        """get() for each, at once (the rows found, by id)."""
        ...

    def record_match(self, tenant_id: str, incident_id: str, error_type: str,
                     decision: MatchDecision) -> tuple[str, int, bool]:
        """Count the incident against its pattern once: (pattern_id, occurrences, pattern is new)."""
        ...


class RecoveryStore(Protocol):
    """The recovery each incident was answered with (one per incident)."""

    def insert(self, tenant_id: str, suggestion: RecoverySuggestion, text: str) -> RecoverySuggestion:
        """Store it unless the incident has one; returns the stored one."""
        ...

    def for_incident(self, tenant_id: str, incident_id: str) -> RecoverySuggestion | None: ...

    def for_incidents(self, tenant_id: str, incident_ids: Collection[str]) -> dict[str, RecoverySuggestion]:
        """for_incident() for each, at once (the recoveries found, by incident id)."""
        ...

    def get(self, tenant_id: str, recovery_id: str) -> RecoverySuggestion | None:
        """One recovery, locked for the transaction."""
        ...

    def save(self, tenant_id: str, suggestion: RecoverySuggestion) -> None: ...

    def last_decision(self, tenant_id: str, pattern_id: str, action_type: str) -> str | None:
        """What a person last decided on this action for the pattern's incidents: "rejected", "approved", or
        None (never asked, or only auto-applied)."""
        ...


class CheckpointStore(Protocol):
    """Human checkpoints: where the loop waits for a person."""

    def insert(self, checkpoint: HumanCheckpoint) -> HumanCheckpoint:
        """Open it unless the same one is open; returns the stored one."""
        ...

    def get(self, tenant_id: str, checkpoint_id: str) -> HumanCheckpoint | None:
        """One checkpoint, locked: two people resolving it at once cannot both win."""
        ...

    def of_tenant(self, tenant_id: str, pending_only: bool) -> list[HumanCheckpoint]: ...

    def save_resolution(self, tenant_id: str, checkpoint: HumanCheckpoint, reason: str | None) -> None: ...


class PolicyStore(Protocol):
    """Policies, their evaluations, and the preventions an active policy records."""

    def insert(self, tenant_id: str, policy: PolicyRule, conditions: Row) -> tuple[PolicyRule, bool]:
        """One policy per (tenant, pattern): the stored one, and whether this call created it."""
        ...

    def for_pattern(self, tenant_id: str, pattern_id: str) -> PolicyRule | None: ...

    def for_patterns(self, tenant_id: str, pattern_ids: Collection[str]) -> dict[str, PolicyRule]:
        """for_pattern() for each, at once (the policies found, by pattern id)."""
        ...

    def get(self, tenant_id: str, policy_id: str) -> PolicyRule | None:
        """One policy, locked for the transaction."""
        ...

    def get_many(self, tenant_id: str, policy_ids: Collection[str]) -> dict[str, PolicyRule]:
        """get() for each, at once, locked in one order (the policies found, by id)."""
        ...

    def of_tenant(self, tenant_id: str, mode: PolicyMode | None) -> list[PolicyRule]: ...

    def save(self, tenant_id: str, policy: PolicyRule) -> None: ...

    def record_evaluation(self, policy: PolicyRule, incident_id: str, would_block: bool) -> bool:
        """Note an evaluation against an incident; False when it already was evaluated."""
        ...

    def record_shadow(self, tenant_id: str, policy: PolicyRule, incident_id: str, would_block: bool) -> None:
        """Count a shadow evaluation once: the evaluation and the policy's counters, added up where stored."""
        ...

    def insert_prevention(self, *, prevention_id: str, tenant_id: str, policy: PolicyRule,
                          original_incident_id: str, blocked_incident_id: str, signature_hash: str) -> str:
        """Record a prevention (once per blocked incident); returns the record's id."""
        ...

    def first_activated(self, tenant_id: str) -> Row | None:
        """The tenant's first policy to be activated (id), or None."""
        ...

    def first_prevention(self, tenant_id: str) -> Row | None:
        """The tenant's first prevention (id, blocked_incident_id, policy_id), or None."""
        ...


class RoutingStore(Protocol):
    """Routing adjustments and the agent KPIs they are judged by."""

    def insert(self, tenant_id: str, incident_id: str,
               adjustment: RoutingAdjustment) -> tuple[RoutingAdjustment, bool]:
        """One adjustment per (policy, agent): the stored one, and whether this call created it."""
        ...

    def for_agent(self, tenant_id: str, agent_id: str, *, lock: bool = False) -> list[RoutingAdjustment]:
        """Every adjustment of the agent, newest first."""
        ...

    def save(self, tenant_id: str, adjustment: RoutingAdjustment) -> None: ...

    def record_kpi(self, tenant_id: str, agent_id: str, kpi: float) -> None: ...

    def latest_kpi(self, tenant_id: str, agent_id: str) -> float | None: ...

    def latest_kpis(self, tenant_id: str, agent_ids: Collection[str]) -> dict[str, float]:
        """latest_kpi() for each, at once (the agents that reported one)."""
        ...


class NotificationOutbox(Protocol):
    """A tenant's notification targets, and announcements queued as workflow runs (loop.announce)."""

    def targets(self, tenant_id: str, event: NotificationEvent) -> NotificationTargets | None: ...

    def submit(self, run_id: str, tenant_id: str, name: str, definition: Mapping[str, Any]) -> None:
        """Write the run in this transaction (once per id) and queue it for the runner."""
        ...


class StageQueues(Protocol):
    """Where the loop hands an envelope to the stage it names."""

    def send(self, envelope: Envelope) -> None: ...

    def send_all(self, envelopes: Sequence[Envelope]) -> list[Exception | None]:
        """send() each, ten to a call; for each, None once sent, or why it was not."""
        ...


class UnitOfWork(Protocol):
    """One transaction, scoped to one tenant, and the stores that work inside it.

    `with uow.begin(tenant_id):` opens the transaction; it commits when the block ends and rolls
    back when it raises. The queues are not part of it: hand-offs are sent once it has committed.
    """

    @property
    def incidents(self) -> IncidentStore: ...

    @property
    def loop(self) -> LoopStore: ...

    @property
    def patterns(self) -> PatternStore: ...

    @property
    def recoveries(self) -> RecoveryStore: ...

    @property
    def checkpoints(self) -> CheckpointStore: ...

    @property
    def policies(self) -> PolicyStore: ...

    @property
    def routing(self) -> RoutingStore: ...

    @property
    def notifications(self) -> NotificationOutbox: ...

    @property
    def queues(self) -> StageQueues: ...

    def begin(self, tenant_id: str | None) -> AbstractContextManager[UnitOfWork]: ...

    def scope(self, tenant_id: str | None) -> None:
        """Scope the rest of the transaction to another tenant (a batch's next tenant)."""
        ...

    def batch(self, tenant_id: str | None) -> AbstractContextManager[UnitOfWork]:
        """begin() for a batch of messages: a write whose answer nobody waits for costs no round trip of
        its own (it travels with the next read), and what the `*_many` reads found answers the rest."""
        ...
