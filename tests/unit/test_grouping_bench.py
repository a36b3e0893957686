"""The grouping benchmark: scoring is right, and neither dataset names nor labels reach the matcher."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from incident_loop.bench import grouping
from incident_loop.grouping import matcher

MESSAGES = ["disk full on node alpha", "disk full on node beta", "lease lost by worker 7",
            "lease lost by worker 9", "disk full on node gamma"]


def _csv(path: Path, labels: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["LineId", "Content", "EventId"])
        writer.writeheader()
        for n, (message, label) in enumerate(zip(MESSAGES, labels, strict=True)):
            writer.writerow({"LineId": n, "Content": message, "EventId": label})
    return path


def test_grouping_accuracy_counts_only_exactly_recovered_groups() -> None:
    truth = ["a", "a", "b", "b", "c"]
    assert grouping.grouping_accuracy(["1", "1", "2", "2", "3"], truth) == 1.0
    assert grouping.grouping_accuracy(["1", "1", "1", "1", "3"], truth) == pytest.approx(1 / 5)
    assert grouping.grouping_accuracy(["1", "2", "3", "3", "4"], truth) == pytest.approx(3 / 5)


def test_matcher_never_sees_dataset_names_or_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    real = matcher.decide

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args + tuple(kwargs.values()))
        return real(*args, **kwargs)

    monkeypatch.setattr(grouping, "decide", spy)
    path = _csv(tmp_path / "SecretDataset_2k.log_structured.csv", ["LBL1", "LBL1", "LBL2", "LBL2", "LBL1"])
    grouping.measure(path)
    flat = " ".join(str(a) for call in seen for a in call)
    assert seen and "SecretDataset" not in flat and "LBL" not in flat


def test_same_messages_group_the_same_whatever_the_file_name_or_labels(tmp_path: Path) -> None:
    one = grouping.measure(_csv(tmp_path / "A_2k.csv", ["x", "x", "y", "y", "x"]))
    other = grouping.measure(_csv(tmp_path / "B_2k.csv", ["p", "q", "r", "s", "t"]))
    assert one["groups"] == other["groups"] == 2
    assert one["ga"] == 1.0 and other["ga"] == 0.0
