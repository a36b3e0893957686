"""Operations: the dashboard shows what runs, every alarm and alert has a runbook, the Alertmanager example holds.

* The CloudWatch dashboard in template.yaml (its !Sub body resolved with placeholders) is valid JSON and shows
  every queue and DLQ, every function, every alarm, and every metric the code emits.
* Every AWS::CloudWatch::Alarm and every alert the code can send to Alertmanager has a runbook, through
  docs/runbooks/README.md, with the sections an on-call engineer needs.
* docs/alertmanager/alertmanager.example.yml passes `amtool check-config`, routes by the seeds' priorities,
  and its inhibit rules mute what they should (a real Alertmanager on 127.0.0.1, nothing leaves the host).
  amtool comes from scripts/amtool, which installs Debian's prometheus-alertmanager when it is missing.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

from incident_loop.alerts import AlertDeliveryFailed
from incident_loop.schemas.alerts import Alert
from incident_loop_dev.local.events import sqs_record
from incident_loop_dev.local.runner import FakeContext, handler_module
from incident_loop_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# Where metrics are emitted and alerts fired: the layer's package and the functions' handlers.
CODE = [ROOT / "layers" / "shared" / "incident_loop", ROOT / "functions"]
RUNBOOKS = ROOT / "docs" / "runbooks"
INDEX = RUNBOOKS / "README.md"
ALERTMANAGER_EXAMPLE = ROOT / "docs" / "alertmanager" / "alertmanager.example.yml"
AMTOOL = ROOT / "scripts" / "amtool"

DASHBOARD = "OperationsDashboard"
SECTIONS = ("What it means", "How to confirm", "What to do", "When to escalate")
# The one place an alert's name is computed at run time: a relayed CloudWatch alarm's rule (its name's suffix).
RELAY = "layers/shared/incident_loop/schemas/alerts.py:from_cloudwatch"
PSEUDO = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::StackName": "incident-loop",
          "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::StackId": "stack-id"}
INSTALL_HINT = (
    "amtool is not available and scripts/amtool could not install it. Install Debian's prometheus-alertmanager "
    "package (as root: apt-get update && apt-get install -y prometheus-alertmanager), or run the tests as root "
    "so that scripts/amtool installs it."
)


# --------------------------------------------------------------------------- template and code


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] in types}


def _queues(template: dict[str, Any]) -> set[str]:
    return set(_resources(template, "AWS::SQS::Queue"))


def _functions(template: dict[str, Any]) -> set[str]:
    return set(_resources(template, "AWS::Serverless::Function", "AWS::Lambda::Function"))


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _resources(template, "AWS::CloudWatch::Alarm")


def _sources() -> list[tuple[Path, ast.Module]]:
    files = sorted(p for root in CODE for p in root.rglob("*.py"))
    return [(p, ast.parse(p.read_text(), str(p))) for p in files]


def _literals(expr: ast.expr | None) -> set[str] | None:
    """The strings an expression can evaluate to, when it is made of literals only (else None)."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.IfExp):
        body, orelse = _literals(expr.body), _literals(expr.orelse)
        return None if body is None or orelse is None else body | orelse
    return None


def _emitted_metrics() -> dict[str, str]:
    """Every metric name the code passes to add_metric, with where it is emitted."""
    found: dict[str, str] = {}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_metric"):
                continue
            arg = next((k.value for k in node.keywords if k.arg == "name"), node.args[0] if node.args else None)
            names = _literals(arg)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            assert names, f"{where}: add_metric with a computed name; the dashboard test cannot see it"
            found.update(dict.fromkeys(names, where))
    return found


def _alerts_in_code() -> tuple[set[str], set[str]]:
    """(alert names the code can fire, the functions that compute an alert's name at run time)."""
    names: set[str] = set()
    computed: set[str] = set()
    for path, tree in _sources():
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
                f = call.func
                constructor = isinstance(f, ast.Name) and f.id == "Alert"
                firing = (isinstance(f, ast.Attribute) and f.attr == "firing"
                          and isinstance(f.value, ast.Name) and f.value.id == "Alert")
                if not (constructor or firing):
                    continue
                arg = next((k.value for k in call.keywords if k.arg == "name"), call.args[0] if call.args else None)
                values: set[str] | None = _literals(arg)
                if values is None and isinstance(arg, ast.Name):  # name = "A" if ... else "B"; Alert(name=name)
                    assigned = [_literals(a.value) for a in ast.walk(func) if isinstance(a, ast.Assign)
                                and any(isinstance(t, ast.Name) and t.id == arg.id for t in a.targets)]
                    if assigned and all(v is not None for v in assigned):
                        values = set().union(*assigned)  # type: ignore[arg-type]
                if values:
                    names |= values
                else:
                    computed.add(f"{path.relative_to(ROOT).as_posix()}:{func.name}")
    return names, computed


def _relayed_rules(template: dict[str, Any]) -> dict[str, str]:
    """Alarms whose state changes reach Alertmanager (via a topic feeding AlertQueue): logical id -> alertname."""
    topics = {
        s["Properties"]["TopicArn"].get("Ref")
        for s in _resources(template, "AWS::SNS::Subscription").values()
        if s["Properties"].get("Endpoint") == {"Fn::GetAtt": ["AlertQueue", "Arn"]}
        and isinstance(s["Properties"].get("TopicArn"), dict)
    }
    assert topics, "no SNS topic feeds AlertQueue: how do the seed's alarms reach Alertmanager?"
    rules = {}
    for logical_id, alarm in _alarms(template).items():
        actions = json.dumps(alarm["Properties"].get("AlarmActions"))
        if not any(json.dumps({"Ref": t}) in actions for t in topics):
            continue
        name = alarm["Properties"].get("AlarmName")
        assert name, f"{logical_id} reaches Alertmanager without an AlarmName: its alertname would be random"
        text = name["Fn::Sub"] if isinstance(name, dict) else name
        rules[logical_id] = str(text).rsplit("-", 1)[-1]  # what schemas.alerts.from_cloudwatch takes
    return rules


# --------------------------------------------------------------------------- the dashboard

_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def _placeholder(variable: str) -> str:
    return PSEUDO.get(variable, f"<{variable}>")


@pytest.fixture(scope="module")
def dashboard_sub(template: dict[str, Any]) -> str:
    boards = _resources(template, "AWS::CloudWatch::Dashboard")
    assert DASHBOARD in boards, f"{DASHBOARD} (AWS::CloudWatch::Dashboard) is missing from template.yaml"
    body = boards[DASHBOARD]["Properties"]["DashboardBody"]
    assert isinstance(body, dict) and isinstance(body.get("Fn::Sub"), str), \
        "DashboardBody must be a !Sub string, so queue and function names resolve"
    return str(body["Fn::Sub"])


@pytest.fixture(scope="module")
def dashboard(dashboard_sub: str) -> dict[str, Any]:
    resolved = _VARIABLE.sub(lambda m: _placeholder(m[1]), dashboard_sub).replace("${!", "${")
    try:
        return dict(json.loads(resolved))
    except json.JSONDecodeError as exc:
        pytest.fail(f"the dashboard body is not valid JSON once its variables resolve: {exc}", pytrace=False)


def _metric_lines(board: dict[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(namespace, metric, dimensions) of every metric drawn ("." repeats the line above's value)."""
    found = set()
    for widget in board["widgets"]:
        if widget.get("type") != "metric":
            continue
        previous: list[Any] = []
        for line in widget["properties"].get("metrics", []):
            parts = [p for p in line if not isinstance(p, dict)]
            if not parts:  # a metric-math expression
                continue
            parts = [previous[i] if p == "." and i < len(previous) else p for i, p in enumerate(parts)]
            previous = parts
            namespace, metric, *dims = parts
            found.add((namespace, metric, tuple(zip(dims[::2], dims[1::2], strict=True))))
    return found


def test_the_dashboard_body_is_valid_json_on_the_24_column_grid(dashboard: dict[str, Any]) -> None:
    widgets = dashboard["widgets"]
    assert widgets
    for widget in widgets:
        assert widget["type"] in {"metric", "text", "alarm", "log"}, widget
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24, widget
        if widget["type"] in {"metric", "log"}:
            assert widget["properties"]["region"] == PSEUDO["AWS::Region"], "widgets take the stack's region"


def test_every_dashboard_variable_names_a_parameter_resource_or_pseudo_parameter(
    template: dict[str, Any], dashboard_sub: str
) -> None:
    known = set(template.get("Parameters", {})) | set(template["Resources"]) | set(PSEUDO)
    variables = set(_VARIABLE.findall(dashboard_sub))
    assert variables
    unknown = {v for v in variables if v.split(".", 1)[0] not in known}
    assert not unknown, f"the dashboard's !Sub names what the template does not define: {sorted(unknown)}"


def test_the_dashboard_is_named_with_the_stage_and_its_url_is_an_output(template: dict[str, Any]) -> None:
    name = template["Resources"][DASHBOARD]["Properties"]["DashboardName"]
    assert "${Stage}" in name["Fn::Sub"]
    urls = [o for o in template["Outputs"].values() if f"${{{DASHBOARD}}}" in json.dumps(o.get("Value"))]
    assert urls, "an Output should give the dashboard's console URL"
    assert "console.aws.amazon.com/cloudwatch" in urls[0]["Value"]["Fn::Sub"]


def test_the_dashboard_shows_every_queue_and_every_dead_letter_queue(
    template: dict[str, Any], dashboard_sub: str, dashboard: dict[str, Any]
) -> None:
    queues = _queues(template)
    dlqs = {q for q in queues if q.endswith("DLQ")}
    assert dlqs and dlqs == {f"{q}DLQ" for q in queues - dlqs}, "every work queue has its DLQ"
    lines = _metric_lines(dashboard)
    for queue in sorted(queues):
        assert f"${{{queue}.QueueName}}" in dashboard_sub, f"the dashboard does not name {queue}"
        dims = (("QueueName", _placeholder(f"{queue}.QueueName")),)
        for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
            assert ("AWS/SQS", metric, dims) in lines, f"{queue}: {metric} is not on the dashboard"


def test_the_dashboard_shows_errors_throttles_and_duration_of_every_function(
    template: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    lines = _metric_lines(dashboard)
    for function in sorted(_functions(template)):
        dims = (("FunctionName", _placeholder(function)),)
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, dims) in lines, f"{function}: {metric} is not on the dashboard"


def test_the_dashboard_shows_every_metric_the_code_emits(template: dict[str, Any], dashboard: dict[str, Any]) -> None:
    emitted = _emitted_metrics()
    # The stage, breaker and CostSim drift metrics must be among them (or the scan itself is broken).
    for expected in ("LoopStageProcessed", "LoopRecordFailed", "BreakerTransition", "BreakerStoreUnavailable",
                     "CostSimBreakerOpen", "CostSimBreakerDisabled", "CostSimDriftP95",
                     "CostSimConsecutiveFailures", "CostSimCanaryFailed", "AlertSendFailures"):
        assert expected in emitted, f"{expected} is no longer emitted: update the dashboard and this test"
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    lines = _metric_lines(dashboard)
    missing = {name: where for name, where in emitted.items()
               if (namespace, name, (("service", service),)) not in lines}
    assert not missing, f"emitted but not on the dashboard (namespace {namespace}, service={service}): {missing}"


def test_the_dashboard_shows_every_alarm_and_the_metric_it_watches(
    template: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    shown = {a for w in dashboard["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]}
    lines = _metric_lines(dashboard)
    for logical_id, alarm in sorted(_alarms(template).items()):
        assert _placeholder(f"{logical_id}.Arn") in shown, f"{logical_id} is not in the dashboard's alarm widget"
        props = alarm["Properties"]
        if "MetricName" not in props:
            continue
        dims = []
        for d in props.get("Dimensions", []):
            value = d["Value"]
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                value = _placeholder(".".join(value["Fn::GetAtt"]))
            elif isinstance(value, dict) and "Ref" in value:
                value = _placeholder(value["Ref"])
            dims.append((d["Name"], value))
        assert (props["Namespace"], props["MetricName"], tuple(dims)) in lines, \
            f"{logical_id} watches {props['MetricName']}, which is not on the dashboard"


# --------------------------------------------------------------------------- runbooks


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(text: str) -> list[tuple[int, str]]:
    return [(len(m[1]), m[2].strip()) for m in re.finditer(r"^(#{1,6}) (.+)$", _without_code(text), re.M)]


def _section(text: str, title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    return found[1] if found else ""


@pytest.fixture(scope="module")
def index() -> dict[str, tuple[list[str], str, str | None]]:
    """docs/runbooks/README.md's rows: alarm logical id or alertname -> (cells, runbook file, anchor)."""
    assert INDEX.is_file(), "docs/runbooks/README.md (the index of runbooks) is missing"
    rows: dict[str, tuple[list[str], str, str | None]] = {}
    for line in INDEX.read_text().splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key = re.fullmatch(r"`([\w:.-]+)`", cells[0])
        link = re.search(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)", cells[-1])
        if key and link:
            assert key[1] not in rows or rows[key[1]][1:] == (link[1], link[2]), f"{key[1]}: two runbooks"
            rows[key[1]] = (cells, link[1], link[2])
    return rows


def _check_runbook(key: str, file: str, anchor: str | None) -> str:
    path = RUNBOOKS / file
    assert path.is_file(), f"{key}: its runbook {path.relative_to(ROOT)} does not exist"
    text = path.read_text()
    headings = _headings(text)
    titles = [title for level, title in headings if level == 2]
    for section in SECTIONS:
        assert section in titles, f"{key}: {file} has no '## {section}' section"
    assert "```" in _section(text, "How to confirm"), f"{key}: {file} confirms with no command"
    if anchor is not None:
        assert anchor in {_anchor(title) for _, title in headings}, f"{key}: {file} has no heading #{anchor}"
    assert key in text, f"{key}: {file} never names it"
    return text


def test_every_alarm_has_a_runbook_with_its_sections(
    template: dict[str, Any], index: dict[str, tuple[list[str], str, str | None]]
) -> None:
    alarms = _alarms(template)
    assert alarms
    for logical_id, alarm in sorted(alarms.items()):
        assert logical_id in index, f"{logical_id} has no row in docs/runbooks/README.md"
        cells, file, anchor = index[logical_id]
        text = _check_runbook(logical_id, file, anchor)
        severity = re.match(r"(P[123]):", str(alarm["Properties"].get("AlarmDescription", "")))
        if severity:
            assert severity[1] in cells[1], f"{logical_id} is {severity[1]} in the template, not in the index"
        queue = json.dumps(alarm["Properties"].get("Dimensions", []))
        if alarm["Properties"].get("Namespace") == "AWS/SQS" and 'DLQ", "QueueName"' in queue:
            assert "aws sqs start-message-move-task" in text, f"{logical_id}: {file} does not say how to redrive"


def test_the_index_lists_no_alarm_the_template_does_not_have(
    template: dict[str, Any], index: dict[str, tuple[list[str], str, str | None]]
) -> None:
    stale = {key for key in index if key.endswith("Alarm")} - set(_alarms(template))
    assert not stale, f"docs/runbooks/README.md lists alarms template.yaml does not define: {sorted(stale)}"


def test_every_alert_the_code_can_send_to_alertmanager_has_a_runbook(
    template: dict[str, Any], index: dict[str, tuple[list[str], str, str | None]]
) -> None:
    names, computed = _alerts_in_code()
    assert {"CostSimV2CircuitBreakerOpen", "CircuitBreakerOpen", "CostSimV2CanaryFailure"} <= names
    assert computed <= {RELAY}, f"alert names computed at run time, unknown to this test: {sorted(computed - {RELAY})}"
    relayed = _relayed_rules(template)
    assert len(relayed) >= 8, "the seed's 8 rules are relayed to Alertmanager"
    for name in sorted(names | set(relayed.values())):
        assert name in index, f"the alert {name} has no row in docs/runbooks/README.md"
        _, file, anchor = index[name]
        _check_runbook(name, file, anchor)
    for logical_id, rule in relayed.items():
        assert index[logical_id][1] == index[rule][1], f"{logical_id} and its alert {rule} point at different runbooks"


# --------------------------------------------------------------------------- the Alertmanager example


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([str(AMTOOL), *args], capture_output=True, text=True, timeout=900, check=False)
    except OSError as exc:
        pytest.fail(f"{AMTOOL.relative_to(ROOT)} could not run ({exc}). {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="module")
def amtool() -> None:
    """amtool on the PATH, installed by scripts/amtool if missing; a loud failure when it cannot be."""
    done = _amtool("--version")
    if done.returncode != 0:
        pytest.fail(f"{INSTALL_HINT}\n{done.stdout}{done.stderr}", pytrace=False)


def test_the_alertmanager_example_passes_amtool_check_config(amtool: None) -> None:
    done = _amtool("check-config", str(ALERTMANAGER_EXAMPLE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(("severity", "receiver"), [("P1", "pager"), ("P2", "chat"), ("P3", "default")])
def test_the_alertmanager_example_routes_by_the_seed_priorities(amtool: None, severity: str, receiver: str) -> None:
    done = _amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_EXAMPLE}",
                   f"--verify.receivers={receiver}", f"severity={severity}", "alertname=CostSimV2HighDrift",
                   "service=incident-loop")
    assert done.returncode == 0, f"{severity} should go to {receiver}: {done.stdout}{done.stderr}"


def test_the_alertmanager_example_groups_by_alertname_and_uses_placeholder_webhooks() -> None:
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    assert "alertname" in config["route"]["group_by"]
    assert config["inhibit_rules"]
    for receiver in config["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, f"{receiver['name']}: plain webhooks only"
        for hook in receiver["webhook_configs"]:
            assert re.match(r"https://[\w.-]*example\.com/", hook["url"]), "webhook URLs are placeholders"


def test_the_alertmanager_example_inhibits_the_p2s_a_p1_explains(amtool: None, tmp_path: Path) -> None:
    from incident_loop_dev.local.services import free_port

    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail(f"prometheus-alertmanager is not on the PATH. {INSTALL_HINT}", pytrace=False)
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = "http://127.0.0.1:9/"  # nothing leaves the host
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "alertmanager.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, process, log)

        def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
            return {"labels": {"alertname": name, "severity": severity, "service": "incident-loop", **labels}}

        def relayed(rule: str, severity: str) -> dict[str, Any]:
            return alert(rule, severity, alarm=f"incident-loop-dev-{rule}", source="cloudwatch")

        sent = [
            relayed("CostSimV2HighDrift", "P1"),
            relayed("CostSimV2DriftWarning", "P2"),
            alert("CostSimV2CircuitBreakerOpen", "P1", breaker="costsim-v2"),
            relayed("CostSimHighConsecutiveFailures", "P2"),
            relayed("CostSimAlertSendFailures", "P2"),
            alert("CircuitBreakerOpen", "P1", breaker="catalog-persist"),
            alert("CostSimV2CanaryFailure", "P2", report_id="can_0000"),
        ]
        request = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(sent).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        expected = {"CostSimV2HighDrift": False, "CostSimV2DriftWarning": True, "CostSimV2CircuitBreakerOpen": False,
                    "CostSimHighConsecutiveFailures": True, "CostSimAlertSendFailures": False,
                    "CircuitBreakerOpen": False, "CostSimV2CanaryFailure": False}
        seen: dict[str, bool] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
                seen = {a["labels"]["alertname"]: bool(a["status"]["inhibitedBy"]) for a in json.loads(response.read())}
            if seen == expected:
                break
            time.sleep(0.2)
        assert seen == expected, f"inhibited (True) or not: expected {expected}, Alertmanager shows {seen}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"Alertmanager did not become ready on {url}:\n{log.read_text()}", pytrace=False)


@pytest.mark.parametrize("logical_id", ["CostSimAlertSendFailuresAlarm", "CostSimAlertQueueBacklogAlarm"])
def test_the_alarms_about_alert_delivery_also_page_the_operators_topic(template: dict[str, Any],
                                                                       logical_id: str) -> None:
    """Through AlertsTopic -> AlertQueue -> alert_worker -> Alertmanager, these two pages took the very path they
    report as broken: they also go to AlarmTopicArn, when it is set."""
    actions = template["Resources"][logical_id]["Properties"]["AlarmActions"]
    assert {"Ref": "AlertsTopic"} in actions
    assert {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]} in actions


# The SQS metric a CloudWatch alarm reads, as the queue attribute it samples.
ATTRIBUTE = {"ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
             "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed"}


def _watched(props: dict[str, Any]) -> list[str]:
    """The AWS/SQS metrics the alarm adds up (one metric, or the metrics of its metric math)."""
    if "MetricName" in props:
        assert props["Namespace"] == "AWS/SQS"
        return [props["MetricName"]]
    return [q["MetricStat"]["Metric"]["MetricName"] for q in props.get("Metrics", []) if "MetricStat" in q]


def test_the_backlog_alarm_sees_alerts_stuck_while_alertmanager_is_down(
        template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 001: "queue depth > 10 for 5m". Alerts alert_worker could not deliver wait out their visibility timeout
    in flight, and Lambda's poller takes each one the moment it is visible: the backlog of an Alertmanager outage is
    ApproximateNumberOfMessagesNotVisible. The alarm watched only ...Visible, about 0."""
    props = template["Resources"]["CostSimAlertQueueBacklogAlarm"]["Properties"]
    threshold = float(props["Threshold"])
    visibility = int(template["Resources"]["AlertQueue"]["Properties"]["VisibilityTimeout"])
    app = handler_module(ROOT / "functions" / "alert_worker", "app.lambda_handler", "alert_worker_backlog")

    def down(alerts: list[Alert], *a: Any, **k: Any) -> None:
        raise AlertDeliveryFailed("alertmanager did not accept 1 alert(s): Connection refused")

    monkeypatch.setattr(app, "deliver", down)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="AlertQueue", Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for n in range(25):  # 25 P1/P2 alerts raised during the outage
            sqs.send_message(QueueUrl=url, MessageBody=Alert.firing("CostSimV2HighDrift", "P1", f"#{n}")
                             .model_dump_json())
        failed = 0
        while True:  # what Lambda's poller does: receive as soon as visible, invoke, leave the failures in flight
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
            if not got.get("Messages"):
                break
            event = {"Records": [sqs_record(m, arn) for m in got["Messages"]]}
            try:
                answer = app.lambda_handler(event, FakeContext(function_name="alert-worker"))
                failed += len(answer["batchItemFailures"])
            except BatchProcessingError:  # every record failed: the invocation errs, the batch stays in flight
                failed += len(event["Records"])
        assert failed == 25  # none delivered, all left for redelivery
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    depth = {metric: int(attrs[ATTRIBUTE[metric]]) for metric in ATTRIBUTE}
    seen = sum(depth[m] for m in _watched(props))
    assert seen > threshold, (
        f"25 alerts are stuck on AlertQueue ({depth}), but the alarm watches {_watched(props)} = {seen}, "
        f"never > {threshold:g}: the backlog of an Alertmanager outage sits in flight between receives")
