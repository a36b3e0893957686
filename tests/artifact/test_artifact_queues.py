"""Every function that can announce may send to WorkflowQueue, as deployed (the built template and artifact).

An announcement is a workflow run committed with its stage, its message sent after the commit. The local runner
merges every function's variables into one process, so a function deployed without WORKFLOW_QUEUE_URL announced
there as if it had it; deployed, the send raised after the commit and failed the stage's whole batch. Which
functions can announce is read off the artifact: the handler modules that load incident_loop.loop.announce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artifact_support import ROOT

from incident_loop_dev.bench.cold_start import function_environment, handler_modules
from incident_loop_dev.local.artifact import built_functions
from incident_loop_dev.local.template import load_template


def _sends_to(properties: dict[str, Any], queue: str) -> bool:
    return any(isinstance(policy, dict) and policy.get("SQSSendMessagePolicy", {}).get("QueueName")
               == {"Fn::GetAtt": [queue, "QueueName"]} for policy in properties.get("Policies") or [])


def test_every_function_that_can_announce_has_the_workflow_queue_and_may_send_to_it(built: Path) -> None:
    resources = load_template(ROOT / ".aws-sam" / "build" / "template.yaml")["Resources"]
    announcing = []
    for lid, fn in built_functions(ROOT).items():
        if "incident_loop.loop.announce" not in handler_modules(fn, function_environment(ROOT, fn,
                                                                                          trace_disabled=True)):
            continue
        announcing.append(lid)
        properties = resources[lid]["Properties"]
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        assert variables.get("WORKFLOW_QUEUE_URL") == {"Ref": "WorkflowQueue"}, lid
        assert _sends_to(properties, "WorkflowQueue"), lid
    # The loop's announcers: a merge's demotion (Bridge 1), a new checkpoint (Bridge 2), a confirmation or regret
    assert {"MatchPatternFunction", "SuggestRecoveryFunction", "LoopApiFunction"} <= set(announcing), announcing
