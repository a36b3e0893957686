"""The local runner's reading of template.yaml: wiring comes from the template, nowhere else."""

from __future__ import annotations

from pathlib import Path

from incident_loop_dev.local.template import ApiRoute, read_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_loop_queue_feeds_the_function_the_template_names() -> None:
    app = read_app(ROOT)
    feeds = {src.queue: fn.logical_id for fn in app.functions.values() for src in fn.sqs_sources}
    assert feeds == {
        "IncidentQueue": "IngestFunction",
        "PatternQueue": "MatchPatternFunction",
        "RecoveryQueue": "SuggestRecoveryFunction",
        "PolicyQueue": "GeneratePolicyFunction",
        "RoutingQueue": "AdjustRoutingFunction",
        "AlertQueue": "AlertWorkerFunction",
        "FailureQueue": "FailurePersistFunction",
        "FailureRetryQueue": "FailureReplayFunction",
        "WorkflowQueue": "WorkflowRunnerFunction",
    }
    assert all(src.partial_failures for fn in app.functions.values() for src in fn.sqs_sources)


def test_every_function_code_folder_has_its_handler() -> None:
    for fn in read_app(ROOT).functions.values():
        module, _ = fn.handler.rsplit(".", 1)
        assert (fn.code_dir / f"{module}.py").is_file(), fn.logical_id


def test_api_route_matching_extracts_path_parameters() -> None:
    route = ApiRoute("POST", "/checkpoints/{checkpoint_id}/resolve")
    assert route.match("post", "/checkpoints/chk_1/resolve") == {"checkpoint_id": "chk_1"}
    assert route.match("GET", "/checkpoints/chk_1/resolve") is None
    assert route.match("POST", "/checkpoints/chk_1/other") is None
