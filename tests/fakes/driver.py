"""The whole loop in memory: report incidents, deliver every hand-off, resolve checkpoints, read the status."""

from __future__ import annotations

from typing import Any

from fakes.unit_of_work import MemoryUnitOfWork
from incident_loop.loop.checkpoints import resolve_checkpoint
from incident_loop.loop.ingest import ingest_incident
from incident_loop.loop.stage import Result, process_batch, process_stage
from incident_loop.loop.status import loop_status
from incident_loop.schemas.envelope import Envelope
from incident_loop.schemas.incident import IncidentIn
from incident_loop.schemas.loop.enums import LoopStage
from incident_loop.schemas.loop.requests import ResolveCheckpoint
from incident_loop.schemas.loop.status import LoopStatus


def timeout(n: int) -> str:
    """The n-th sibling of one failure: only the numbers differ."""
    return f"Skill web_search timed out after {n}s calling https://api.example.com/v1/q?id={n * 7}"


class MemoryLoop:
    """One tenant's loop on a MemoryUnitOfWork (ingest's failure-catalog write is the caller's to stub)."""

    def __init__(self, tenant: str = "tenant-a", uow: MemoryUnitOfWork | None = None) -> None:
        self.tenant = tenant
        self.uow = uow or MemoryUnitOfWork()

    def report(self, n: int = 1, message: str | None = None, **fields: Any) -> str:
        """Report the n-th incident (ingest); its first envelope waits in the queues."""
        incident = IncidentIn(**{"agent_id": "agent-1", "run_id": f"run-{n}", "error_type": "SkillTimeoutError",
                                 "skill_id": "web_search", "severity": "high",
                                 "error_message": message or timeout(n), **fields})
        return ingest_incident(incident, self.tenant, uow=self.uow).incident_id

    def next_envelope(self) -> Envelope:
        return self.uow.queues.sent.pop(0)

    def deliver(self, stage: LoopStage | None = None) -> dict[str, Any]:
        """Deliver the oldest waiting envelope to its stage (or to `stage`, as a misrouted message would go)."""
        envelope = self.next_envelope()
        return process_stage(envelope, stage or envelope.stage, uow=self.uow)

    def deliver_batch(self, size: int = 10) -> list[Result]:
        """Deliver the oldest waiting envelopes of the oldest one's stage, up to `size`, as one SQS batch."""
        stage = self.uow.queues.sent[0].stage
        batch = [e for e in self.uow.queues.sent if e.stage == stage][:size]
        for envelope in batch:
            self.uow.queues.sent.remove(envelope)
        return process_batch(batch, stage, uow=self.uow)

    def drain(self) -> list[LoopStage]:
        """Deliver until nothing waits; the stages run, in order."""
        ran = []
        while self.uow.queues.sent:
            ran.append(self.uow.queues.sent[0].stage)
            self.deliver()
        return ran

    def resolve(self, incident_id: str, resolution: str = "approve", **fields: Any) -> dict[str, Any]:
        """A person's decision on the incident's open checkpoint."""
        checkpoint = self.status(incident_id).pending_checkpoints[0]
        decision = ResolveCheckpoint(resolution=resolution, resolved_by=fields.pop("resolved_by", "op"), **fields)
        return resolve_checkpoint(self.tenant, checkpoint, decision, uow=self.uow)

    def status(self, incident_id: str) -> LoopStatus:
        return loop_status(self.tenant, incident_id, uow=self.uow)

    def incident(self, incident_id: str) -> dict[str, Any]:
        row = self.uow.incidents.get(self.tenant, incident_id)
        assert row is not None
        return row
