"""What the docs tell people to type: the CLI's help, and deploy.md's parameters against the template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from incident_loop_dev import cli
from incident_loop_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI sets defaults in the environment (metrics off, a quiet log): set here, they are undone after."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")


def test_a_benchmarks_help_shows_its_own_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """`bench kv --help` printed only the list of benchmarks: no benchmark's flags (README) could be looked up."""
    with pytest.raises(SystemExit) as done:
        cli.main(["bench", "kv", "--help"])
    assert done.value.code == 0 and "--workers" in capsys.readouterr().out


def test_bench_alone_lists_the_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--help"]) == 0
    assert "grouping" in capsys.readouterr().out
    assert cli.main(["bench"]) == 2


def test_deploy_md_lists_every_parameter_of_the_template() -> None:
    """AlertmanagerUrl (its default a placeholder: no alert arrives) and FailureRetentionDays were missing."""
    documented = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "deploy.md").read_text(), re.MULTILINE))
    assert set(load_template(ROOT / "template.yaml")["Parameters"]) <= documented
