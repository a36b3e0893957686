"""The application as deployed, on this machine: `incident-loop local invoke` and `local start-api`.

Every function runs from the built artifact (`.aws-sam/build`) in its own isolated interpreter
(artifact.FunctionHost); AWS is moto's server over HTTP; PostgreSQL is DATABASE_URL or the
embedded server. The wiring (queues, tables, secrets, event sources, routes, the authorizer)
comes from template.yaml through LocalApp, the same reading the in-process runner uses.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from incident_loop_dev.local.artifact import BuiltFunction, FunctionHost, built_functions, runtime_site
from incident_loop_dev.local.keys import local_keys
from incident_loop_dev.local.runner import DeliveryStats, LocalApp
from incident_loop_dev.local.services import LOCAL_AWS_ENV

SIGNING_SECRET = "ApiSigningSecret"  # the template's secret the authorizer reads its keys from
OWNER_SECRET = "DbOwnerSecretArn"  # the template parameter naming the schema owner's credentials


def read_env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` format: {"LogicalId": {"VAR": "value"}, "Parameters": {...}}."""
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{\"FunctionLogicalId\": {{\"VAR\": \"value\"}}, \"Parameters\": {{...}}}}")
    return {str(k): {str(n): str(v) for n, v in vars_.items()} for k, vars_ in data.items()}


class LocalCloud:
    """moto + PostgreSQL + the template's resources, and a warm host per function (started on first use)."""

    def __init__(self, root: Path, admin_url: str, function_url: str, endpoint_url: str, *,
                 env_vars: dict[str, dict[str, str]] | None = None, parameters: dict[str, str] | None = None,
                 logs: IO[str] | None = None):
        self.root = root
        self.endpoint_url = endpoint_url
        self.function_url = function_url
        self.admin_url = admin_url
        self.env_vars = env_vars or {}
        self.logs = logs or sys.stderr
        self.keys = local_keys(admin_url)
        self.functions: dict[str, BuiltFunction] = built_functions(root)
        self.app = LocalApp(root, endpoint_url, function_url, parameters=parameters,
                            secret_values={SIGNING_SECRET: self.keys.dumps()}, invoker=self.invoke)
        self.app.provision()
        self.hosts: dict[str, FunctionHost] = {}
        self._hosts_lock = threading.Lock()

    def environment(self, logical_id: str) -> dict[str, str]:
        """What the function's environment holds here: its template variables resolved locally."""
        env = {**LOCAL_AWS_ENV, **self.app.function_environment(logical_id)}
        # The secret's credentials are DATABASE_URL here: the owner's for the function the template
        # gives the owner's secret (migrations), the RLS-bound function role's for every other.
        owner = self.app.spec.functions[logical_id].environment.get("DB_SECRET_ARN") == {"Ref": OWNER_SECRET}
        env.pop("DB_SECRET_ARN", None)
        env.update({"DATABASE_URL": self.admin_url if owner else self.function_url,
                    "AWS_ENDPOINT_URL": self.endpoint_url, "POWERTOOLS_TRACE_DISABLED": "true"})
        env.update(self.env_vars.get("Parameters", {}))
        env.update(self.env_vars.get(logical_id, {}))
        return env

    def host(self, logical_id: str) -> FunctionHost:
        with self._hosts_lock:
            if logical_id not in self.hosts:
                if logical_id not in self.functions:
                    raise LookupError(f"{logical_id} is not a function of the built template "
                                      f"({', '.join(sorted(self.functions))})")
                self.hosts[logical_id] = FunctionHost(self.functions[logical_id], runtime_site(self.root),
                                                      self.environment(logical_id), stdout=self.logs,
                                                      stderr=self.logs)
            return self.hosts[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Run a function from its artifact; raises artifact.InvocationError as Lambda reports errors."""
        return self.host(logical_id).invoke(event)

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()


class QueuePollers:
    """Every SQS event source of the template, polled continuously as Lambda's event source mappings do."""

    def __init__(self, cloud: LocalCloud, idle_sleep_s: float = 0.2):
        self.cloud = cloud
        self.idle_sleep_s = idle_sleep_s
        self.stats = DeliveryStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self) -> None:
        app = self.cloud.app
        for fn in app.spec.functions.values():
            for src in fn.sqs_sources:
                thread = threading.Thread(target=self._poll, args=(fn, src), name=f"poll-{src.queue}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _poll(self, fn: Any, src: Any) -> None:
        while not self._stop.is_set():
            try:
                moved = self.cloud.app._deliver_batch(fn, src, self.stats, False)
            except Exception as exc:  # noqa: BLE001 - a poller survives moto hiccups; the error is kept
                self.errors.append(f"{src.queue}: {exc}")
                moved = False
            if not moved:
                self._stop.wait(self.idle_sleep_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)


def scheduled_event(logical_id: str) -> dict[str, Any]:
    """The EventBridge event a Schedule source delivers."""
    return {
        "version": "0", "id": f"local-{int(time.time() * 1000)}", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1", "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{logical_id}"], "detail": {},
    }
