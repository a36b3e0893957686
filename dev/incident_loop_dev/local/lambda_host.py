"""A Lambda execution environment without Docker: one function, run from its built artifact.

Started as `python -I -S lambda_host.py --path DIR ... --handler app.lambda_handler --result-fd N`:
isolated (no environment variables of Python's, no user or venv site-packages, not even the
script's own folder on the path), so the function sees only what Lambda would give it: its
CodeUri, its layers and the boto3 of the runtime, each named by a `--path` in Lambda's order.

It reads one invocation per line on stdin ({"event": ..., "request_id": ..., "deadline_ms": ...})
and writes one line per answer on the result pipe: {"ok": true, "response": ...} or, as Lambda
reports an unhandled error, {"ok": false, "errorType": ..., "errorMessage": ..., "stackTrace": [...]}.
The handler's own stdout (logs, EMF metrics) stays on stdout, apart from the answers.

This file imports nothing but the standard library and the function: it is the runtime's part.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
import uuid


class LambdaContext:
    """The context object the python3.11 runtime passes to a handler."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self._deadline_ms = deadline_ms
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException) -> dict:
    return {
        "ok": False,
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", action="append", default=[], help="a sys.path entry, in order")
    parser.add_argument("--handler", required=True)
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args()
    sys.path[:0] = args.path
    results = os.fdopen(args.result_fd, "w", buffering=1)

    module_name, _, func_name = args.handler.rpartition(".")
    try:
        started = time.perf_counter()
        handler = getattr(importlib.import_module(module_name), func_name)
        init_ms = (time.perf_counter() - started) * 1000
    except BaseException as exc:  # an init error answers every invocation, as Lambda's does
        results.write(json.dumps({**_error(exc), "phase": "init"}) + "\n")
        return 1
    results.write(json.dumps({"ok": True, "phase": "init", "init_ms": init_ms}) + "\n")

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        context = LambdaContext(request.get("request_id") or str(uuid.uuid4()),
                                int(request.get("deadline_ms") or (time.time() + 30) * 1000))
        try:
            answer = {"ok": True, "response": handler(request["event"], context)}
            text = json.dumps(answer, default=str)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, as Lambda does
            text = json.dumps(_error(exc), default=str)
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
