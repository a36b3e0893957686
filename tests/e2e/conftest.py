"""`incident-loop local start-api` for a test module: the built functions over HTTP, real tokens, admin reads."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_http import LocalApi

from incident_loop_dev.local.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_api(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApi]:
    """`incident-loop local start-api` on a fresh database, as a user starts it (needs `make build`)."""
    admin_url = create_database()
    env = {**os.environ, "DATABASE_URL": admin_url}
    env.pop("AWS_ENDPOINT_URL", None)
    port = free_port()
    log_path = tmp_path_factory.mktemp("start-api") / "stderr.log"
    logs = log_path.open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "incident_loop_dev.cli", "local", "start-api", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=logs, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != f"listening on http://127.0.0.1:{port}":
        proc.kill()
        logs.seek(0)
        pytest.fail(f"start-api did not start (first line {line!r}); stderr:\n{logs.read()[-4000:]}", pytrace=False)
    try:
        yield LocalApi(f"http://127.0.0.1:{port}", admin_url, env, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        logs.close()
