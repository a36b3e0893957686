"""Every function of template.yaml has an artifact test, and a missing build fails the suite (never skips)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from artifact_support import ROOT, require_build, template_functions

from incident_loop_dev.local.artifact import BuildMissing, installed_runtime


def _invoked_by_tests() -> set[str]:
    """The functions named by `@pytest.mark.invokes` in this folder's test modules."""
    named: set[str] = set()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_artifact_marks_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, test in vars(module).items():
            if name.startswith("test_") and callable(test):
                named |= {fn for mark in getattr(test, "pytestmark", []) if mark.name == "invokes" for fn in mark.args}
    return named


def test_every_function_of_the_template_has_an_artifact_test() -> None:
    functions, tested = template_functions(ROOT / "template.yaml"), _invoked_by_tests()

    assert sorted(functions - tested) == [], "functions of template.yaml without an artifact test"
    assert sorted(tested - functions) == [], "artifact tests name functions template.yaml does not have"


def test_the_build_holds_every_function_of_the_template(built: Path) -> None:
    assert template_functions(built / "template.yaml") == template_functions(ROOT / "template.yaml")


def test_a_missing_build_fails_and_says_run_make_build(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="run `make build`"):
        require_build(tmp_path)


def test_a_missing_runtime_fails_and_says_run_make_runtime(tmp_path: Path) -> None:
    (tmp_path / ".aws-sam" / "build").mkdir(parents=True)
    for template in (tmp_path / "template.yaml", tmp_path / ".aws-sam" / "build" / "template.yaml"):
        template.write_text("Resources: {}\n")

    with pytest.raises(pytest.fail.Exception, match="run `make runtime`"):
        require_build(tmp_path)


def test_a_runtime_folder_without_its_marker_is_not_installed(tmp_path: Path) -> None:
    """An interrupted `make runtime` leaves the folder but not the marker it writes last: the local
    functions and the cold-start benchmark then say to run it, instead of failing on a missing module."""
    (tmp_path / "boto3").mkdir()

    with pytest.raises(BuildMissing, match="run `make runtime`"):
        installed_runtime(tmp_path)
    (tmp_path / ".installed").touch()
    assert installed_runtime(tmp_path) == tmp_path
