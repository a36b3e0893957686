"""template.yaml keeps the promises of the design: DLQs, partial batch failures, alarms, TTL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from incident_loop.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
GLOBAL_TIMEOUT = TEMPLATE["Globals"]["Function"]["Timeout"]


def of_type(kind: str) -> dict[str, Any]:
    return {k: v for k, v in RESOURCES.items() if v["Type"] == kind}


QUEUES = of_type("AWS::SQS::Queue")
FUNCTIONS = of_type("AWS::Serverless::Function")
WORK_QUEUES = {k: v for k, v in QUEUES.items() if not k.endswith("DLQ")}


def sqs_events() -> list[tuple[str, dict[str, Any]]]:
    return [(name, e["Properties"]) for name, fn in FUNCTIONS.items()
            for e in (fn["Properties"].get("Events") or {}).values() if e["Type"] == "SQS"]


def test_the_five_loop_functions_exist() -> None:
    assert {"IngestFunction", "MatchPatternFunction", "SuggestRecoveryFunction", "GeneratePolicyFunction",
            "AdjustRoutingFunction"} <= set(FUNCTIONS)


@pytest.mark.parametrize("queue", sorted(WORK_QUEUES))
def test_every_queue_has_a_dlq_with_redrive_and_an_alarm(queue: str) -> None:
    redrive = QUEUES[queue]["Properties"]["RedrivePolicy"]
    dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq in QUEUES and int(redrive["maxReceiveCount"]) >= 1
    alarms = [a for a in of_type("AWS::CloudWatch::Alarm").values()
              if a["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [dlq, "QueueName"]}]
    assert len(alarms) == 1


def test_every_sqs_event_reports_batch_item_failures() -> None:
    events = sqs_events()
    assert len(events) == 5
    assert all(props["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for _, props in events)


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout() -> None:
    for name, props in sqs_events():
        queue = props["Queue"]["Fn::GetAtt"][0]
        timeout = FUNCTIONS[name]["Properties"].get("Timeout", GLOBAL_TIMEOUT)
        assert QUEUES[queue]["Properties"]["VisibilityTimeout"] >= 6 * timeout, name


def test_idempotency_table_expires_records_on_expiration() -> None:
    ttl = RESOURCES["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expiration", "Enabled": True}
    assert RESOURCES["BreakersTable"]["Properties"]["KeySchema"][0]["AttributeName"] == "name"


def test_layer_builds_with_python311() -> None:
    layer = RESOURCES["SharedLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.11"
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "python3.11"


def test_migrations_reach_the_deploy_time_function() -> None:
    shipped = sorted(p.name for p in (ROOT / "functions" / "migrate" / "migrations").glob("*.sql"))
    assert shipped == sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert RESOURCES["Migrations"]["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}


def test_cfn_lint_passes() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
