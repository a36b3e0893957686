"""What the artifact tests share: placeholders of events/, the module's cloud, a recording HTTP server."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

# The placeholder ids of events/, replaced by real ones before an event is sent.
TENANT = "tenant-demo"
INCIDENT = "inc_0123456789abcdef"
LOOP = "loop_0123456789abcdef"
PATTERN = "pat_0123456789abcdef"
CHECKPOINT = "chk_0123456789abcdef"
RECOVERY = "rec_0123456789abcdef"
POLICY = "pol_0123456789abcdef"
FAILURE = "00000000-0000-4000-8000-0123456789ab"


def template_functions(template_path: Path) -> set[str]:
    """The logical ids of every AWS::Serverless::Function of a template."""
    from incident_loop_dev.local.template import load_template

    resources = load_template(template_path).get("Resources", {})
    return {name for name, res in resources.items() if res.get("Type") == "AWS::Serverless::Function"}


def require_build(root: Path) -> Path:
    """root's built artifact; pytest.fail (never a skip) naming the make target when it or the runtime is missing."""
    from incident_loop_dev.local.artifact import build_dir, runtime_site

    template = build_dir(root) / "template.yaml"
    if not template.exists():
        pytest.fail(f"no {template.relative_to(root)}: run `make build` (sam build) first", pytrace=False)
    if not (runtime_site(root) / ".installed").exists():
        pytest.fail(f"no runtime SDK in {runtime_site(root).relative_to(root)}: run `make runtime` first",
                    pytrace=False)
    missing = template_functions(root / "template.yaml") - template_functions(template)
    if missing:
        pytest.fail(f"the build is stale, it lacks {sorted(missing)}: run `make build`", pytrace=False)
    return build_dir(root)


class Recorder(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that answers 200 to everything and keeps each request."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[Request] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = _record

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Artifact:
    """The module's LocalCloud: invokes built functions, loads events, and looks as the admin."""

    def __init__(self, cloud: Any, admin: psycopg.Connection[dict[str, Any]], tenant: str, logs: Path):
        self.cloud, self.admin, self.tenant, self.logs = cloud, admin, tenant, logs
        self.invoked: list[str] = []

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """The function's response; raises artifact.InvocationError as Lambda reports errors."""
        self.invoked.append(logical_id)
        return self.cloud.invoke(logical_id, event)

    def event(self, name: str, ids: dict[str, str] | None = None) -> dict[str, Any]:
        """events/<name> with its placeholders replaced (the tenant always; each of `ids`, which must occur)."""
        text = (EVENTS / name).read_text()
        for placeholder, real in {**(ids or {}), TENANT: self.tenant}.items():
            if placeholder != TENANT and placeholder not in text:
                raise AssertionError(f"events/{name} has no placeholder {placeholder} to replace")
            text = text.replace(placeholder, real)
        return dict(json.loads(text))

    def rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        return self.admin.execute(query, params).fetchall()

    def stages(self, incident_id: str) -> list[str]:
        """The stages loop_events recorded for an incident, in order."""
        found = self.rows("SELECT stage FROM loop_events WHERE incident_id = %(id)s ORDER BY created_at, event_id",
                          id=incident_id)
        return [row["stage"] for row in found]

    def take(self, queue_logical_id: str) -> list[dict[str, Any]]:
        """The message bodies waiting on a queue of the template (received and deleted)."""
        sqs, url = self.cloud.app.sqs, self.cloud.app.queue_urls[queue_logical_id]
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in messages]
