"""Functions run from the built artifact (`.aws-sam/build`), each in its own isolated interpreter.

What a function may import is exactly what Lambda would give it: its own CodeUri, its layers
and the boto3 the python3.11 runtime ships (`runtime_site()`, installed by `make runtime`).
Nothing of the development virtualenv is on its path, so a function that imports here imports
when deployed, and a missing dependency is a failing invocation, not a surprise in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = Path(__file__).with_name("lambda_host.py")
# The SDK the python3.11 managed runtime ships (Lambda's runtimes page lists it per runtime).
RUNTIME_REQUIREMENTS = "runtime/python3.11.txt"


class InvocationError(RuntimeError):
    """The function raised, timed out, or could not start; carries Lambda's error fields."""

    def __init__(self, payload: dict[str, Any]):
        self.payload = payload
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")


class BuildMissing(RuntimeError):
    """There is no built artifact to run."""


def build_dir(root: Path) -> Path:
    return root / ".aws-sam" / "build"


def runtime_site(root: Path) -> Path:
    """Where `make runtime` installs the runtime's boto3 (never the dev virtualenv's)."""
    return root / ".aws-runtime" / "python3.11"


def installed_runtime(runtime: Path) -> Path:
    """`runtime` when `make runtime` finished installing it (its marker written last), else BuildMissing."""
    if not (runtime / ".installed").exists():
        raise BuildMissing(f"no runtime SDK in {runtime}: run `make runtime`")
    return runtime


def base_python() -> str:
    """The interpreter under the virtualenv: run with -I -S it sees the standard library only."""
    return getattr(sys, "_base_executable", None) or sys.executable


@dataclass
class BuiltFunction:
    logical_id: str
    code_dir: Path
    layer_dirs: list[Path]
    handler: str
    timeout_s: int
    memory_mb: int

    def sys_path(self, runtime: Path) -> list[str]:
        """Lambda's order: /var/task, each layer's /opt/python/lib/.../site-packages and /opt/python, the runtime."""
        paths = [str(self.code_dir)]
        for layer in self.layer_dirs:
            paths += [str(layer / "python" / "lib" / "python3.11" / "site-packages"), str(layer / "python")]
        return paths + [str(runtime)]


def built_functions(root: Path) -> dict[str, BuiltFunction]:
    """Every function of the built template, with its artifact folders."""
    from incident_loop_dev.local.template import load_template

    built = build_dir(root)
    template_path = built / "template.yaml"
    if not template_path.exists():
        raise BuildMissing(f"no {template_path}: run `make build` (sam build) first")
    template = load_template(template_path)
    glob = template.get("Globals", {}).get("Function", {})
    resources = template.get("Resources", {})
    found: dict[str, BuiltFunction] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        layers = []
        for ref in props.get("Layers", glob.get("Layers", [])):
            name = ref.get("Ref") if isinstance(ref, dict) else None
            if name and name in resources:
                layers.append(built / str(resources[name]["Properties"]["ContentUri"]))
        found[logical_id] = BuiltFunction(
            logical_id=logical_id,
            code_dir=built / str(props["CodeUri"]),
            layer_dirs=layers,
            handler=str(props.get("Handler", glob.get("Handler"))),
            timeout_s=int(props.get("Timeout", glob.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", glob.get("MemorySize", 128))),
        )
    return found


def lambda_environment(fn: BuiltFunction, variables: dict[str, str]) -> dict[str, str]:
    """What Lambda sets, plus the function's resolved variables; nothing inherited from this shell."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": str(fn.code_dir),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.update({k: str(v) for k, v in variables.items()})
    return env


class FunctionHost:
    """One warm execution environment of a function: a long-lived isolated interpreter.

    Invocations are serialised (one at a time, as one Lambda sandbox); a timeout kills the
    interpreter and the next invocation starts a cold one, as Lambda does.
    """

    def __init__(self, fn: BuiltFunction, runtime: Path, env: dict[str, str], *,
                 stdout: IO[str] | None = None, stderr: IO[str] | None = None):
        self.fn, self.runtime, self.env = fn, runtime, env
        self._stdout, self._stderr = stdout, stderr
        self._proc: subprocess.Popen[str] | None = None
        self._results: IO[str] | None = None
        self._lock = threading.Lock()
        self.init_ms: float | None = None
        self.cold_starts = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        installed_runtime(self.runtime)
        read_fd, write_fd = os.pipe()
        cmd = [base_python(), "-I", "-S", str(HOST), "--handler", self.fn.handler, "--result-fd", str(write_fd)]
        for entry in self.fn.sys_path(self.runtime):
            cmd += ["--path", entry]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=self._stdout or sys.stderr, stderr=self._stderr or sys.stderr,
            env=lambda_environment(self.fn, self.env), cwd=self.fn.code_dir, text=True, pass_fds=(write_fd,),
        )
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "r")
        self.cold_starts += 1
        first = self._read(self.fn.timeout_s + 30)
        if not first.get("ok"):
            self.stop()
            raise InvocationError(first)
        self.init_ms = float(first.get("init_ms") or 0.0)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self._results is not None and self._proc is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._results.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self.stop()
            return {"ok": False, "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {timeout_s:.2f} seconds"}
        if not box or not box[0]:
            code = self._proc.wait()
            self._proc = None
            return {"ok": False, "errorType": "Runtime.ExitError", "errorMessage": f"RequestId: exited with {code}"}
        return dict(json.loads(box[0]))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._results is not None:
            self._results.close()
            self._results = None

    # -- invoking ----------------------------------------------------------------------------
    def invoke(self, event: Any) -> Any:
        """The handler's response; raises InvocationError with Lambda's error fields."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            deadline_ms = int((time.time() + self.fn.timeout_s) * 1000)
            request = {"event": event, "request_id": str(uuid.uuid4()), "deadline_ms": deadline_ms}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer = self._read(self.fn.timeout_s)
        if not answer.get("ok"):
            raise InvocationError(answer)
        return answer.get("response")
