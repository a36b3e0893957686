"""The story `incident-loop run` tells, through the real functions on moto and PostgreSQL.

Four timeouts of one research agent: the first creates a pattern and waits for approval, the
second (0.8) waits too, the third auto-applies at 0.9; the shadow policy is confirmed to ACTIVE
and the fourth is prevented. A rate-limit failure arrives through the ingest queue on the side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incident_loop_dev.local.runner import LocalApp

APPROVER = "oncall@example.com"


@dataclass
class StoryStep:
    title: str
    incident_id: str
    status: dict[str, Any]
    console: str


@dataclass
class Story:
    tenant_id: str
    steps: list[StoryStep] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    routing: dict[str, Any] = field(default_factory=dict)
    graduation: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "loops": [{"title": s.title, **s.status} for s in self.steps],
            "policies": self.policies,
            "routing": self.routing,
            "graduation": self.graduation,
            "dead_letters": self.dead_letters,
        }


def _expect(status: int, body: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        raise RuntimeError(f"{what}: HTTP {status} {body}")
    return body


class StoryRunner:
    def __init__(self, app: LocalApp, tenant_id: str, events: Path, duplicate: bool = False) -> None:
        self.app, self.tenant, self.events, self.duplicate = app, tenant_id, events, duplicate
        self.story = Story(tenant_id)

    def report(self, event_file: str) -> str:
        """POST /incidents with a file from events/, as the demo tenant; returns the incident id."""
        body = json.loads(json.loads((self.events / event_file).read_text())["body"])
        status, answer = self.app.request("POST", "/incidents", self.tenant, body)
        if self.duplicate:  # a client retry: same incident, same id
            status_again, again = self.app.request("POST", "/incidents", self.tenant, body)
            assert status_again == 202 and again["incident_id"] == answer["incident_id"], again
        return str(_expect(status, answer, 202, f"POST /incidents {event_file}")["incident_id"])

    def settle(self) -> None:
        self.app.drain(duplicate=self.duplicate)

    def snapshot(self, title: str, incident_id: str) -> StoryStep:
        status, body = self.app.request("GET", f"/loops/{incident_id}", self.tenant)
        _, console = self.app.request("GET", f"/loops/{incident_id}", self.tenant, query={"format": "console"})
        step = StoryStep(title, incident_id, _expect(status, body, 200, "GET /loops"), console)
        self.story.steps.append(step)
        return step

    def approve_pending(self, incident_id: str) -> None:
        status, body = self.app.request("GET", "/checkpoints", self.tenant, query={"status": "pending"})
        mine = [c for c in _expect(status, body, 200, "GET /checkpoints")["checkpoints"]
                if c["incident_id"] == incident_id]
        for checkpoint in mine:
            status, body = self.app.request(
                "POST", f"/checkpoints/{checkpoint['checkpoint_id']}/resolve", self.tenant,
                {"resolution": "approve", "resolved_by": APPROVER, "reason": "search API timeouts are transient"},
            )
            _expect(status, body, 200, "resolve checkpoint")

    def run(self) -> Story:
        first = self.report("ingest_api_timeout_1.json")
        self.settle()
        self.snapshot("1st timeout: new pattern, recovery at 0.7 waits for approval", first)
        self.approve_pending(first)
        self.settle()
        self.snapshot("1st timeout after approval: shadow policy, routing adjusted", first)

        second = self.report("ingest_api_timeout_2.json")
        self.settle()
        self.approve_pending(second)
        self.settle()
        self.snapshot("2nd timeout: same pattern, 0.8, approved", second)

        third = self.report("ingest_api_timeout_3.json")
        self.settle()
        self.snapshot("3rd timeout: auto-applied at 0.9", third)

        record = json.loads((self.events / "ingest_sqs_rate_limit.json").read_text())["Records"][0]
        side = json.loads(record["body"]) | {"tenant_id": self.tenant}
        self.app.send("IncidentQueue", side)
        self.settle()

        status, body = self.app.request("GET", "/policies", self.tenant, query={"mode": "shadow"})
        for policy in _expect(status, body, 200, "GET /policies")["policies"]:
            if policy["source_pattern_id"] == self.story.steps[0].status["pattern_match_result"]["pattern_id"]:
                status, answer = self.app.request(
                    "POST", f"/policies/{policy['policy_id']}/confirm", self.tenant,
                    {"by": APPROVER, "reason": "shadow evaluations match the incidents we saw"},
                )
                _expect(status, answer, 200, "confirm policy")

        fourth = self.report("ingest_api_timeout_4.json")
        self.settle()
        self.snapshot("4th timeout: prevented by the active policy", fourth)

        self.story.policies = self.app.request("GET", "/policies", self.tenant)[1]["policies"]
        agent = self.story.steps[1].status["routing_adjustment"]["agent_id"]
        self.story.routing = self.app.request("GET", f"/routing/{agent}", self.tenant)[1]
        self.story.graduation = self.app.request("GET", "/graduation", self.tenant)[1]
        self.story.dead_letters = {
            q: len(self.app.dlq_messages(q))
            for q in self.app.spec.queues
            if "RedrivePolicy" in (self.app.spec.queues[q].get("Properties") or {})
        }
        return self.story


def render(story: Story) -> str:
    """The story as the console shows it."""
    lines = [f"tenant {story.tenant_id}", ""]
    for step in story.steps:
        lines += [f"== {step.title}", step.console.rstrip(), ""]
    lines.append("== policies")
    for p in story.policies:
        lines.append(f"  {p['policy_id']} {p['mode']:<7} {p['action']:<11} evaluations={p['shadow_evaluations']}"
                     f" would_block={p['shadow_would_block']} confirmations={p['confirmations_received']}")
    lines.append(f"== routing for {story.routing.get('agent_id')}: total effective magnitude "
                 f"{story.routing.get('total_effective_magnitude')}")
    grad = story.graduation
    lines.append(f"== graduation: {grad.get('passed')}/{grad.get('total')} gates")
    for gate in grad.get("gates", []):
        lines.append(f"  {'PASS' if gate['passed'] else 'FAIL'} {gate['gate']}: {gate['evidence']}")
    lines.append(f"== dead letters: {story.dead_letters}")
    return "\n".join(lines)
