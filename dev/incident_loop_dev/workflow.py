"""`incident-loop workflow run FILE` and `incident-loop workflow replay RUN_ID`: workflows through the real functions.

Both drive the template's functions in this process (LocalApp, as `incident-loop run` does) on moto's server
and PostgreSQL (DATABASE_URL, else the embedded server in .pgdata): `run` posts the definition to
POST /workflows (WorkflowApiFunction) and delivers the workflow queue to WorkflowRunnerFunction until it is
empty; `replay` posts to POST /workflows/{id}/replay.

When no external service is configured (SLACK_BASE_URL, VOYAGE_BASE_URL and WORKFLOW_WEBHOOK_URL all unset),
the fake Slack, Voyage and webhook receivers (incident_loop_dev.fakes) start on 127.0.0.1, the settings point
at them (127.0.0.1 allow-listed for webhooks) and their token, key and signing secret go into moto's SSM. A
definition's `{{WEBHOOK_URL}}` and `{{WEBHOOK_SECRET_PARAMETER}}` are filled from the fake receiver, or from
WORKFLOW_WEBHOOK_URL and WORKFLOW_WEBHOOK_SECRET_PARAMETER.

`live_calls` of a replay is every HTTP request that left for anything but moto while it ran, counted on
urllib3's connection pools (which every skill's HTTP and every AWS call go through); the receivers' own
counters are reported beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EXTERNAL = ("SLACK_BASE_URL", "VOYAGE_BASE_URL", "WORKFLOW_WEBHOOK_URL")
PLACEHOLDERS = {"{{WEBHOOK_URL}}": "WORKFLOW_WEBHOOK_URL",
                "{{WEBHOOK_SECRET_PARAMETER}}": "WORKFLOW_WEBHOOK_SECRET_PARAMETER"}
DEFAULT_TENANT = "tenant-local"


class OutboundCounter:
    """Counts HTTP requests sent through urllib3 to anything but the `local` (host, port)s, while active."""

    def __init__(self, local: set[tuple[str, int]]) -> None:
        self.local = local
        self.requests: list[str] = []

    def __enter__(self) -> OutboundCounter:
        import urllib3.connectionpool

        pool_class = urllib3.connectionpool.HTTPConnectionPool
        self._original = original = pool_class.urlopen
        counter = self

        def counting(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if (pool.host, pool.port) not in counter.local:
                counter.requests.append(f"{method} {pool.scheme}://{pool.host}:{pool.port}{url}")
            return original(pool, method, url, *args, **kwargs)

        pool_class.urlopen = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        import urllib3.connectionpool

        urllib3.connectionpool.HTTPConnectionPool.urlopen = self._original  # type: ignore[method-assign]


@dataclass
class LocalWorkflows:
    """The application's workflow functions on this machine, for one tenant."""

    app: Any  # incident_loop_dev.local.runner.LocalApp
    tenant: str
    fakes: Any | None = None  # incident_loop_dev.fakes.FakeServices, when the fakes stand in for the services
    local_endpoints: set[tuple[str, int]] = field(default_factory=set)

    def fill(self, definition: dict[str, Any]) -> dict[str, Any]:
        """The definition with its placeholders filled (SystemExit naming one nothing fills)."""
        text = json.dumps(definition)
        values = {"{{WEBHOOK_URL}}": self.fakes.webhook.url if self.fakes else None,
                  "{{WEBHOOK_SECRET_PARAMETER}}": self.fakes.webhook_secret_parameter if self.fakes else None}
        for placeholder, variable in PLACEHOLDERS.items():
            if placeholder in text:
                value = values[placeholder] or os.environ.get(variable)
                if not value:
                    raise SystemExit(f"the definition uses {placeholder}: set {variable}")
                text = text.replace(placeholder, value)
        return dict(json.loads(text))

    def submit(self, definition: dict[str, Any]) -> str:
        """POST /workflows; the run's id."""
        status, body = self.app.request("POST", "/workflows", self.tenant, self.fill(definition))
        if status != 202:
            raise SystemExit(f"POST /workflows answered {status}: {json.dumps(body)}")
        return str(body["workflow_run_id"])

    def run(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Submit, deliver the queues until empty, and return GET /workflows/{id} with the receivers' counts."""
        run_id = self.submit(definition)
        self.app.drain()
        status, body = self.app.request("GET", f"/workflows/{run_id}", self.tenant)
        if status != 200:
            raise SystemExit(f"GET /workflows/{run_id} answered {status}: {json.dumps(body)}")
        dead = self.app.dlq_messages("WorkflowQueue")
        return {**body, "tenant_id": self.tenant, "dead_letters": len(dead),
                "receivers": self.fakes.counts() if self.fakes else None}

    def replay(self, run_id: str) -> dict[str, Any]:
        """POST /workflows/{id}/replay, counting every HTTP request that left for anything but moto meanwhile."""
        before = self.fakes.counts() if self.fakes else {}
        with OutboundCounter(self.local_endpoints) as outbound:
            status, body = self.app.request("POST", f"/workflows/{run_id}/replay", self.tenant)
        if status != 200:
            raise SystemExit(f"POST /workflows/{run_id}/replay answered {status}: {json.dumps(body)}")
        after = self.fakes.counts() if self.fakes else {}
        received = {k: after[k] - before[k] for k in after if isinstance(after[k], int)}
        return {**body, "tenant_id": self.tenant, "live_calls": len(outbound.requests),
                "outbound_requests": outbound.requests, "receiver_calls": received}


@contextlib.contextmanager
def local_workflows(root: Path, admin_url: str, tenant: str = DEFAULT_TENANT) -> Iterator[LocalWorkflows]:
    """Moto's server, the migrated database, the template's resources, and (unless configured) the fakes."""
    import boto3

    from incident_loop import migrate
    from incident_loop.skills.slack_send import GRANTS_PARAMETER
    from incident_loop_dev.fakes import fake_services
    from incident_loop_dev.local.runner import LOCAL_STAGE, LocalApp, reset_container_caches
    from incident_loop_dev.local.services import function_role_url, moto_server

    saved = dict(os.environ)
    with moto_server() as endpoint, contextlib.ExitStack() as stack:
        migrate.apply(admin_url, root / "migrations")
        app = LocalApp(root, endpoint, function_role_url(admin_url))  # the functions: not the owner
        app.provision()
        fakes = None
        if not any(os.environ.get(name) for name in EXTERNAL):
            # The receivers' secrets as the tenant's own: a call may name only incident-loop/<stage>/tenants/<tenant>/
            fakes = stack.enter_context(fake_services(
                ssm_client=boto3.client("ssm", endpoint_url=endpoint), prefix=f"/incident-loop/local/tenants/{tenant}",
                grants_parameter=GRANTS_PARAMETER.format(stage=LOCAL_STAGE, tenant=tenant)))
            os.environ.update(fakes.env)
            reset_container_caches()
        moto = urlsplit(endpoint)
        try:
            yield LocalWorkflows(app, tenant, fakes, {(moto.hostname or "127.0.0.1", moto.port or 80)})
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_container_caches()


def _quiet(verbose: bool) -> None:
    """The functions' logs to stderr (stdout is the report), and only errors unless asked."""
    from incident_loop.observability import logger

    logger.setLevel("DEBUG" if verbose else "CRITICAL")
    handler = getattr(logger, "registered_handler", None)
    if handler is not None and hasattr(handler, "setStream"):
        handler.setStream(sys.stderr)


def render_run(run: dict[str, Any]) -> str:
    """The run as text: its id, tenant, status and one line per op."""
    lines = [f"workflow_run_id: {run['workflow_run_id']}", f"tenant_id: {run['tenant_id']}",
             f"status: {run['status']}" + (f" ({run['error_code']}: {run['error_message']})" if run['error_code']
                                          else "")]
    for op in run["ops"]:
        error = f"  {op['error_code']}: {op['error_message']}" if op["error_code"] else ""
        lines.append(f"  op {op['op_index']}  {op['op_type']:<13} {op['status']:<9} {op['duration_ms'] or 0:>6} ms"
                     f"{'  transient' if op['transient'] else ''}{error}")
    if run.get("receivers"):
        lines.append("receivers: " + ", ".join(f"{k}={v}" for k, v in run["receivers"].items()))
    return "\n".join(lines)


def render_replay(report: dict[str, Any]) -> str:
    """The replay's summary as text."""
    keys = ("status", "severity", "ops_verified", "ops_failed", "ops_skipped", "first_mismatch_op_index",
            "live_calls")
    return "\n".join([*(f"{key}: {report[key]}" for key in keys), report["text"]])


def add_parser(sub: Any) -> None:
    """`workflow run FILE` and `workflow replay RUN_ID`."""
    wf = sub.add_parser("workflow", help="run a workflow through the real functions, or verify one by replay")
    verbs = wf.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run a workflow definition (JSON file) and print its ops")
    run.add_argument("file")
    replay = verbs.add_parser("replay", help="verify a finished run on its recorded outputs (no live calls)")
    replay.add_argument("run_id")
    for parser in (run, replay):
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--tenant", default=DEFAULT_TENANT, help=f"the run's tenant (default {DEFAULT_TENANT})")
        parser.add_argument("--verbose", action="store_true", help="the functions' logs on stderr")


def main(args: argparse.Namespace, root: Path) -> int:
    """Run the verb; 0 when the run completed (run) or verified (replay)."""
    from incident_loop_dev.local.services import postgres

    _quiet(args.verbose)
    definition = json.loads(Path(args.file).read_text()) if args.verb == "run" else None
    with contextlib.redirect_stdout(sys.stderr), postgres(os.environ.get("DATABASE_URL"), root / ".pgdata") as url, \
            local_workflows(root, url, args.tenant) as workflows:
        result = workflows.run(definition) if definition is not None else workflows.replay(args.run_id)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render_run(result) if args.verb == "run" else render_replay(result))
    ok = result["status"] == ("completed" if args.verb == "run" else "verified")
    return 0 if ok else 1
