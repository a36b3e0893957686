"""Cold starts at the floor: no X-Ray SDK unless the function traces, no Swagger UI ever (the built artifact).

Each handler module is imported in an isolated interpreter on the function's own path (CodeUri, layer,
the runtime's boto3) with the function's variables, and sys.modules is read back.
"""

from __future__ import annotations

from pathlib import Path

from artifact_support import ROOT

from incident_loop_dev.bench.cold_start import function_environment, handler_modules
from incident_loop_dev.local.artifact import built_functions


def _heavy(loaded: list[str]) -> list[str]:
    return [name for name in loaded if name.startswith("aws_xray_sdk") or "swagger" in name]


def test_no_handler_imports_xray_or_swagger_with_tracing_off(built: Path) -> None:
    # Given every function of the built template, with POWERTOOLS_TRACE_DISABLED=true
    functions = built_functions(ROOT)
    # When each handler module is imported from the artifact
    loaded = {lid: handler_modules(fn, function_environment(ROOT, fn, trace_disabled=True))
              for lid, fn in functions.items()}
    # Then none of them loaded the X-Ray SDK or Swagger UI
    assert functions, "the built template has no functions"
    assert {lid: _heavy(names) for lid, names in loaded.items() if _heavy(names)} == {}


def test_with_tracing_on_only_handlers_that_trace_load_xray(built: Path) -> None:
    # Given the deployed environment (POWERTOOLS_TRACE_DISABLED unset: tracing on)
    for lid, fn in built_functions(ROOT).items():
        # When each handler module is imported from the artifact
        loaded = handler_modules(fn, function_environment(ROOT, fn, trace_disabled=False))
        traces = "tracer." in (fn.code_dir / "app.py").read_text()
        # Then the X-Ray SDK is there exactly when the handler uses the tracer, and Swagger UI never
        assert ("aws_xray_sdk.core" in loaded) == traces, lid
        assert not [name for name in loaded if "swagger" in name], lid


def test_only_the_pattern_bridge_loads_the_grouping_at_a_cold_start(built: Path) -> None:
    # Given every function of the built template
    functions = built_functions(ROOT)
    # When each handler module is imported from the artifact
    loaded = {lid: handler_modules(fn, function_environment(ROOT, fn, trace_disabled=True))
              for lid, fn in functions.items()}
    grouping = {lid for lid, names in loaded.items() if "incident_loop.grouping.matcher" in names}
    # Then only MatchPattern brought the matcher and its compiled rules (6 to 9 ms); the others' unit of
    # work makes its pattern store when a route first asks for it
    assert grouping == {"MatchPatternFunction"}
