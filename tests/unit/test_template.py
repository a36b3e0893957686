"""template.yaml keeps the promises of the design: DLQs, partial batch failures, timeouts, alarms, wiring."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load

from incident_loop_dev.local.runner import handler_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# The loop, bridge by bridge: the queue that feeds each function.
LOOP = {
    "IngestFunction": "IncidentQueue",
    "MatchPatternFunction": "PatternQueue",
    "SuggestRecoveryFunction": "RecoveryQueue",
    "GeneratePolicyFunction": "PolicyQueue",
    "AdjustRoutingFunction": "RoutingQueue",
}
# Every SQS consumer: the loop's five, the alert worker, failure persistence and replay, the workflow runner.
CONSUMERS = {**LOOP, "AlertWorkerFunction": "AlertQueue", "FailurePersistFunction": "FailureQueue",
             "FailureReplayFunction": "FailureRetryQueue", "WorkflowRunnerFunction": "WorkflowQueue"}
# One workflow run per invocation: its ops are external calls, each may take the skill's whole budget.
BATCH_SIZES = {"WorkflowQueue": 1}
# Alerts wait out an Alertmanager outage (20 receives x 180 s) before they dead-letter.
MAX_RECEIVES = {"AlertQueue": 20, "FailureRetryQueue": 50, "WorkflowQueue": 10}  # the rest: 5
FOURTEEN_DAYS = 14 * 24 * 3600


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    # cfn-lint's loader understands the short tags: !Ref X -> {"Ref": "X"}, !GetAtt A.B -> {"Fn::GetAtt": [A, B]}.
    return dict(load(str(TEMPLATE)))


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _resources(template, "AWS::Serverless::Function")


def _events(function: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e["Properties"] for e in (function["Properties"].get("Events") or {}).values() if e["Type"] == type_]


def _work_queues(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _resources(template, "AWS::SQS::Queue").items() if not k.endswith("DLQ")}


def _timeout(template: dict[str, Any], function: dict[str, Any]) -> int:
    return int(function["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"]))


def test_the_five_loop_functions_exist_each_fed_by_its_queue(template: dict[str, Any]) -> None:
    functions = _functions(template)
    for name, queue in LOOP.items():
        assert name in functions, f"{name} is missing"
        queues = [e["Queue"] for e in _events(functions[name], "SQS")]
        assert queues == [{"Fn::GetAtt": [queue, "Arn"]}], f"{name} should consume exactly {queue}"


def test_every_work_queue_redrives_to_its_own_dead_letter_queue(template: dict[str, Any]) -> None:
    queues = _resources(template, "AWS::SQS::Queue")
    work = _work_queues(template)
    assert set(work) == set(CONSUMERS.values())
    for name, queue in work.items():
        redrive = queue["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{name}DLQ", "Arn"]}, name
        assert redrive["maxReceiveCount"] == MAX_RECEIVES.get(name, 5), name
        dlq = queues[f"{name}DLQ"]["Properties"]
        assert dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS, f"{name}DLQ keeps messages 14 days"
        assert dlq["MessageRetentionPeriod"] > queue["Properties"]["MessageRetentionPeriod"], name
    assert set(queues) == set(work) | {f"{name}DLQ" for name in work}, "every queue is a work queue or its DLQ"


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    for name, queue in _resources(template, "AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, name


def test_every_sqs_event_reports_partial_batch_failures(template: dict[str, Any]) -> None:
    events = [(name, e) for name, fn in _functions(template).items() for e in _events(fn, "SQS")]
    assert len(events) == len(CONSUMERS)
    for name, event in events:
        assert event.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], name
        assert event["BatchSize"] == BATCH_SIZES.get(event["Queue"]["Fn::GetAtt"][0], 10), name
        assert event["MaximumBatchingWindowInSeconds"] == 1, name


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(template: dict[str, Any]) -> None:
    queues = _resources(template, "AWS::SQS::Queue")
    for fn in _functions(template).values():
        for event in _events(fn, "SQS"):
            queue = event["Queue"]["Fn::GetAtt"][0]
            visibility = int(queues[queue]["Properties"]["VisibilityTimeout"])
            assert visibility >= 6 * _timeout(template, fn), queue


def test_every_dead_letter_queue_has_a_depth_alarm(template: dict[str, Any]) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    for name in _work_queues(template):
        alarm = alarms.get(f"{name}DLQAlarm")
        assert alarm is not None, f"{name}DLQAlarm is missing"
        props = alarm["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [f"{name}DLQ", "QueueName"]}}]
        assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
        # Alarms notify only when an SNS topic was given.
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_idempotency_table_expires_records_on_expiration(template: dict[str, Any]) -> None:
    table = template["Resources"]["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_kv_table_is_keyed_on_pk_and_expires_items_on_expires_at(template: dict[str, Any]) -> None:
    table = template["Resources"]["KvTable"]
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["DeletionPolicy"] == "Retain"  # values outlive a redeploy, like the other tables


def test_the_workflow_runner_reaches_its_queue_the_skills_tables_and_their_secrets(template: dict[str, Any]) -> None:
    runner = template["Resources"]["WorkflowRunnerFunction"]["Properties"]
    env = runner["Environment"]["Variables"]
    assert env["KV_TABLE"] == {"Ref": "KvTable"}
    assert env["WORKFLOW_QUEUE_URL"] == {"Ref": "WorkflowQueue"}  # continuations of a long run
    policies = json.dumps(runner["Policies"])
    for needed in ('{"TableName": {"Ref": "KvTable"}}', '{"TableName": {"Ref": "IdempotencyTable"}}',
                   '{"TableName": {"Ref": "BreakersTable"}}', '"SSMParameterReadPolicy"',
                   '"secretsmanager:GetSecretValue"', '{"QueueName": {"Fn::GetAtt": ["WorkflowQueue", "QueueName"]}}'):
        assert needed in policies, needed
    api = template["Resources"]["WorkflowApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["WORKFLOW_QUEUE_URL"] == {"Ref": "WorkflowQueue"}
    retention = template["Resources"]["AuditRetentionFunction"]["Properties"]
    assert retention["Environment"]["Variables"]["AUDIT_RETENTION_DAYS"] == {"Ref": "AuditRetentionDays"}
    assert [e["Schedule"] for e in _events(template["Resources"]["AuditRetentionFunction"], "Schedule")]


def test_every_function_code_folder_exists(template: dict[str, Any]) -> None:
    for name, fn in _functions(template).items():
        folder = ROOT / fn["Properties"]["CodeUri"]
        assert folder.is_dir(), f"{name}: {folder} does not exist"
        assert (folder / "requirements.txt").is_file(), f"{name}: sam build expects {folder}/requirements.txt"


def test_the_migrate_function_ships_the_one_copy_of_the_migrations(template: dict[str, Any]) -> None:
    code = ROOT / template["Resources"]["MigrateFunction"]["Properties"]["CodeUri"]
    link = code / "migrations"
    assert link.is_symlink(), "functions/migrate/migrations must link to migrations/, not copy it"
    assert link.resolve() == (ROOT / "migrations").resolve()
    assert sorted(link.glob("*.sql")), "no migrations found through the link"


def test_the_migrations_custom_resource_reruns_when_asked_or_when_the_code_changes(template: dict[str, Any]) -> None:
    props = template["Resources"]["Migrations"]["Properties"]
    assert template["Resources"]["Migrations"]["Type"] == "Custom::Migrations"
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert props["Version"] == {"Ref": "MigrationsVersion"}
    assert props["CodeVersion"] == {"Ref": "MigrateFunction.Version"}
    for name in [*LOOP, "LoopApiFunction", "WorkflowApiFunction", "WorkflowRunnerFunction", "AuditRetentionFunction"]:
        assert template["Resources"][name].get("DependsOn") == "Migrations", f"{name} must wait for the schema"


def test_the_api_wires_every_route_the_code_serves(template: dict[str, Any]) -> None:
    from incident_loop_dev.openapi import document

    served = {(method.upper(), path) for path, ops in json.loads(document())["paths"].items() for method in ops}
    wired = {
        (e["Method"].upper(), e["Path"])
        for fn in _functions(template).values()
        for e in _events(fn, "Api")
        if e["RestApiId"] == {"Ref": "LoopApi"}
    }
    assert wired == served


def test_each_api_function_serves_exactly_the_routes_the_template_wires_to_it(template: dict[str, Any]) -> None:
    """A function's resolver holds only its own routers (incident_loop.api): a route wired to a function that
    does not serve it would answer 404 when deployed, and one it serves unwired is code loaded for nothing."""
    checked = 0
    for logical_id, fn in _functions(template).items():
        wired = {(e["Method"].upper(), e["Path"]) for e in _events(fn, "Api")}
        if not wired:
            continue
        properties = fn["Properties"]
        app = handler_module(ROOT / properties["CodeUri"], properties["Handler"], f"_template_{logical_id}").app
        served = {(r.method, r.openapi_path) for r in (*app._static_routes, *app._dynamic_routes)}
        assert served == wired, f"{logical_id}: served {sorted(served - wired)}, wired {sorted(wired - served)}"
        checked += 1
    assert checked == 4  # ingest, the loop API, the CostSim API, the workflow API


def test_every_route_but_health_goes_through_the_token_authorizer(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    auth = resources["LoopApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "TokenAuthorizer"
    authorizer = auth["Authorizers"]["TokenAuthorizer"]
    assert authorizer["FunctionPayloadType"] == "TOKEN"
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert 0 < authorizer["Identity"]["ReauthorizeEvery"] <= 3600  # cached, and a revoked key stops working
    open_routes = {
        event["Properties"]["Path"]
        for resource in resources.values() if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "Api" and (event["Properties"].get("Auth") or {}).get("Authorizer") == "NONE"
    }
    assert open_routes == {"/health"}
    env = resources["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["API_SIGNING_SECRET_ARN"] == {"Ref": "ApiSigningSecret"}


def test_the_scheduled_canary_runs_once_an_hour_even_when_it_fails(template: dict[str, Any]) -> None:
    """A failed canary run counts CostSimCanaryFailed and queues its alert, then raises: each of Lambda's default two
    retries of the scheduled invocation would count and alert again."""
    props = template["Resources"]["CostSimCanaryFunction"]["Properties"]
    assert any(event["Type"] == "Schedule" for event in props["Events"].values())
    assert (props.get("EventInvokeConfig") or {}).get("MaximumRetryAttempts", 2) == 0


def test_bridge_one_runs_a_bounded_number_of_batches_at_once(template: dict[str, Any]) -> None:
    """In a storm of one failure every pattern batch waits for one key's lock: uncapped, SQS scales toward 1,250
    batches at once and the last wait past the lock_timeout (docs/benchmarks.md, `bench storm`)."""
    [event] = _events(template["Resources"]["MatchPatternFunction"], "SQS")
    assert event["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "PatternMaxConcurrency"}
    parameter = template["Parameters"]["PatternMaxConcurrency"]
    assert 2 <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= 1000  # SQS's bounds
    assert parameter["Default"] <= 75  # the last batch waits at most half the lock_timeout at the measured hold


def test_the_audit_outlives_every_idempotency_record_of_its_runs(template: dict[str, Any]) -> None:
    """A run deleted before its ops' idempotency records (the skills' 19 days, the runner's 7) kept its id for a
    reused Idempotency-Key (the id is derived from it): the new run was swallowed, then handed the old results."""
    from pydantic import ValidationError

    from incident_loop.settings import Settings

    parameter = template["Parameters"]["AuditRetentionDays"]
    defaults = Settings()
    assert parameter["MinValue"] * 86_400 > defaults.skill_idempotency_expiry_s
    assert Settings.from_environment({"AUDIT_RETENTION_DAYS": str(parameter["MinValue"])}).audit_retention_days == 20
    with pytest.raises(ValidationError, match="audit_retention_days"):
        Settings.from_environment({"AUDIT_RETENTION_DAYS": "19"})
    with pytest.raises(ValidationError, match="must outlast"):
        Settings.from_environment({"AUDIT_RETENTION_DAYS": "30", "SKILL_IDEMPOTENCY_EXPIRY_S": str(40 * 86_400)})


def test_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    command = str(cfn_lint) if cfn_lint.exists() else shutil.which("cfn-lint")
    if command is None:
        pytest.fail("cfn-lint is not installed: run `make install`", pytrace=False)
    result = subprocess.run([command, str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_knows_its_stack_stage_so_secret_and_slack_checks_are_closed(template: dict[str, Any]) -> None:
    """skills.secrets.tenant_owns and slack_send.check_granted check nothing without STAGE (a process outside a
    stack): every deployed function must have it, as the Stage that IAM's secret paths are granted under."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["STAGE"] == {"Ref": "Stage"}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            own = (resource["Properties"].get("Environment") or {}).get("Variables") or {}
            assert "STAGE" not in own, logical_id  # one value for every function


def _policy_names(resource: dict[str, Any]) -> list[str]:
    return [json.dumps(policy, sort_keys=True) for policy in resource["Properties"].get("Policies") or []]


def test_what_reads_the_slack_grants_and_sets_costsim_incidents_right_may_do_so(template: dict[str, Any]) -> None:
    """The local runner enforces no IAM: these grants are only proven here. The workflow API checks a channel against
    the tenant's grants at PUT /notifications; the canary reads the costsim-v2 breaker and sends a late incident into
    the loop (breaker_alerts.reconcile_costsim_incidents)."""
    resources = template["Resources"]
    api = _policy_names(resources["WorkflowApiFunction"])
    assert any("SSMParameterReadPolicy" in p and "slack-grants/*" in p for p in api), api
    canary = _policy_names(resources["CostSimCanaryFunction"])
    assert any("DynamoDBReadPolicy" in p and "BreakersTable" in p for p in canary), canary
    assert any("SQSSendMessagePolicy" in p and "IncidentQueue" in p for p in canary), canary
    variables = resources["CostSimCanaryFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["INCIDENT_QUEUE_URL"] == {"Ref": "IncidentQueue"}
