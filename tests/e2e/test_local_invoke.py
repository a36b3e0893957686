"""`incident-loop local invoke`: one function from the built artifact, the response on stdout, logs on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
pytestmark = pytest.mark.e2e


def _invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "incident_loop_dev.cli", "local", "invoke", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)


@pytest.fixture(scope="module")
def env(create_database: Any) -> dict[str, str]:
    environment = {**os.environ, "DATABASE_URL": create_database()}
    environment.pop("AWS_ENDPOINT_URL", None)
    return environment


def test_invoke_prints_the_api_response_on_stdout_and_logs_on_stderr(env: dict[str, str]) -> None:
    done = _invoke(env, "IngestFunction", "-e", str(EVENTS / "ingest_api_timeout_1.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads(done.stdout)  # stdout is exactly the response
    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    assert body["incident_id"].startswith("inc_") and body["duplicate"] is False
    assert "incident accepted" in done.stderr  # the function's structured logs


def test_invoke_reports_a_validation_error_as_the_api_would(env: dict[str, str]) -> None:
    done = _invoke(env, "IngestFunction", "-e", str(EVENTS / "ingest_api_invalid.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads(done.stdout)
    assert response["statusCode"] == 422 and json.loads(response["body"])["errors"]


def test_invoke_of_an_sqs_batch_whose_records_all_fail_is_a_function_error(env: dict[str, str]) -> None:
    done = _invoke(env, "MatchPatternFunction", "-e", str(EVENTS / "match_pattern_batch_with_poison.json"))
    # The poison record fails, and the envelope names an incident this fresh database does not hold:
    # with every record failed, Powertools fails the invocation (SQS retries the whole batch).
    assert done.returncode == 1
    assert json.loads(done.stdout)["errorType"] == "BatchProcessingError"
    assert "this is not an envelope" in done.stderr and "is not stored yet" in done.stderr


def test_invoke_of_a_raising_function_prints_lambdas_error_and_exits_non_zero(env: dict[str, str]) -> None:
    done = _invoke(env, "AuthorizerFunction", "-e", str(EVENTS / "authorizer_token.json"))
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["errorType"] == "Unauthorized" and error["errorMessage"] == "Unauthorized"


def test_env_vars_file_overrides_a_functions_variables(env: dict[str, str], tmp_path: Path) -> None:
    overrides = tmp_path / "env.json"
    overrides.write_text(json.dumps({"FailureRetentionFunction": {"FAILURE_RETENTION_DAYS": "0"}}))
    done = _invoke(env, "FailureRetentionFunction", "-e", str(EVENTS / "ingest_sqs_rate_limit.json"),
                   "--env-vars", str(overrides))
    # 0 days is below the settings model's minimum: the function refuses to start, and says why.
    assert done.returncode == 1
    assert "failure_retention_days" in json.loads(done.stdout)["errorMessage"]


def test_invoke_of_an_unknown_function_names_the_known_ones(env: dict[str, str]) -> None:
    done = _invoke(env, "NoSuchFunction", "-e", str(EVENTS / "ingest_api_timeout_1.json"))
    assert done.returncode != 0 and "LoopApiFunction" in done.stderr
