"""`incident-loop bench grouping`: Bridge 1's grouping on labelled logs, beside Drain3, same run.

Each file's `Content` column is streamed, in order, as the incidents of one tenant and one error
type through the same normaliser and matcher Bridge 1 uses: in memory, and with `--db` through the
PostgreSQL index and record_match. Drain3 (default TemplateMiner()) groups the same messages and is
scored the same way. Labels (`EventId`, `EventTemplate`) are read only by the scorer
(grouping_scores.py); the matcher never sees them, nor the file's name.

Per dataset: GA, PA and FTA of the shipped configuration; the leave-one-dataset-out GA and the
calibration of the confidence (grouping_loo.py: every tunable decided on the other datasets);
throughput beside Drain3; GA under perturbations that mimic an unseen system (grouping_perturb.py).
`--fit-confidence` prints the configuration and coefficients the procedure picks on every dataset
(what matcher.CONFIG and confidence.COEFFICIENTS ship). `--latency` times decide() against
10^3..10^6 stored patterns.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drain3 import TemplateMiner  # imported here, outside the timed part

from incident_loop.grouping import confidence
from incident_loop.grouping.matcher import CONFIG, clear_memos, decide
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.observability import SERVICE
from incident_loop.settings import DEFAULT_DATABASE_URL, get_settings
from incident_loop_dev.bench.docs import replace_section
from incident_loop_dev.bench.grouping_digest import digest
from incident_loop_dev.bench.grouping_digest import render as render_digest
from incident_loop_dev.bench.grouping_fit import calibration
from incident_loop_dev.bench.grouping_latency import group_in_postgres, match_latency
from incident_loop_dev.bench.grouping_loo import (
    ERROR_TYPE,
    KINDS,
    ORIGINAL,
    TENANT,
    VARIANTS,
    Dataset,
    Protocol,
    describe,
    load,
)
from incident_loop_dev.bench.grouping_report import render
from incident_loop_dev.bench.grouping_scores import (
    grouping_accuracy,
    parsing_accuracy,
    same_partition,
    template_accuracy,
)

REPEAT = 5


# --- the groupers: messages in, one group id per message out ----------------------------------

def group_in_memory(messages: list[str]) -> list[str]:
    """Bridge 1's decision for each message, applied to an in-memory index."""
    index = MemoryPatternIndex()
    record = index.record
    recorded = [record(TENANT, decide(m, ERROR_TYPE, TENANT, index)) for m in messages]
    return [index.resolve(g) for g in recorded]  # a pattern merged into a sibling since is the sibling


def group_with_drain3(messages: list[str]) -> list[str]:
    miner = TemplateMiner()
    return [str(miner.add_log_message(m)["cluster_id"]) for m in messages]


def _templates_in_memory(messages: list[str]) -> tuple[list[str], list[str]]:
    """Groups and each message's final template (its pattern's template at the end)."""
    clear_memos()
    index = MemoryPatternIndex()
    recorded = [index.record(TENANT, decide(m, ERROR_TYPE, TENANT, index)) for m in messages]
    groups = [index.resolve(g) for g in recorded]  # a pattern merged into a sibling since is the sibling
    return groups, [index.template(g) for g in groups]


def _templates_with_drain3(messages: list[str]) -> tuple[list[str], list[str]]:
    miner = TemplateMiner()
    ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
    final = {cluster.cluster_id: cluster.get_template() for cluster in miner.drain.clusters}
    return [str(i) for i in ids], [final[i] for i in ids]


def _cold(fn: Callable[[list[str]], list[str]]) -> Callable[[list[str]], list[str]]:
    def run(messages: list[str]) -> list[str]:
        clear_memos()  # every run starts from nothing: no verdict or signature memoised
        return fn(messages)
    return run


def _rates(runners: dict[str, Callable[[list[str]], list[str]]], messages: list[str], repeat: int
           ) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Groups and msgs/s of each runner: the median of `repeat` interleaved runs, timed in CPU
    seconds of this process (other load on a shared machine then skews neither side)."""
    times: dict[str, list[float]] = defaultdict(list)
    out: dict[str, list[str]] = {}
    for _ in range(repeat):
        for name, fn in runners.items():
            start = time.process_time()
            out[name] = fn(messages)
            times[name].append(time.process_time() - start)
    return out, {name: len(messages) / max(statistics.median(t), 1e-9) for name, t in times.items()}


def _accuracy(groups: list[str], templates: list[str], dataset: Dataset) -> dict[str, float]:
    return {"ga": round(grouping_accuracy(groups, dataset.events), 4),
            "pa": round(parsing_accuracy(templates, dataset.templates), 4),
            "fta": round(template_accuracy(groups, templates, dataset.events, dataset.templates), 4)}


def measure(path: Path, db_url: str | None = None, repeat: int = REPEAT, dataset: Dataset | None = None
            ) -> dict[str, Any]:
    """One dataset: GA, PA, FTA and msgs/s of the shipped configuration beside Drain3's (and
    through PostgreSQL with db_url)."""
    dataset = dataset or load(path)
    messages = dataset.messages
    groups, rates = _rates({"ours": _cold(group_in_memory), "drain3": group_with_drain3}, messages, repeat)
    ours, templates = _templates_in_memory(messages)
    drain, drain_templates = _templates_with_drain3(messages)
    assert ours == groups["ours"]  # the timed runs grouped the same
    mine, theirs = _accuracy(ours, templates, dataset), _accuracy(drain, drain_templates, dataset)
    result: dict[str, Any] = {
        "dataset": dataset.name, "messages": len(messages), **mine,
        "groups": len(set(ours)), "true_groups": len(set(dataset.events)), "msgs_per_s": round(rates["ours"]),
        **{f"drain3_{k}": v for k, v in theirs.items()}, "drain3_groups": len(set(drain)),
        "drain3_msgs_per_s": round(rates["drain3"]), "throughput_ratio": round(rates["ours"] / rates["drain3"], 2),
    }
    if db_url:
        clear_memos()
        stored, rate = group_in_postgres(messages, db_url)
        result.update(db_ga=round(grouping_accuracy(stored, dataset.events), 4),
                      db_same_groups=same_partition(stored, ours), db_msgs_per_s=round(rate))
    return result


def robustness(datasets: list[Dataset], repeat: int = 3) -> list[dict[str, Any]]:
    """GA of the shipped configuration and of Drain3 under each perturbation, per dataset, and
    throughput beside Drain3 (as measure() times it, `repeat` interleaved runs)."""
    rows = []
    for variant in VARIANTS:
        per = {}
        for dataset in datasets:
            messages = dataset.variant(variant)
            groups, rates = _rates({"ours": _cold(group_in_memory), "drain3": group_with_drain3}, messages, repeat)
            per[dataset.name] = {"ga": round(grouping_accuracy(groups["ours"], dataset.events), 4),
                                 "drain3_ga": round(grouping_accuracy(groups["drain3"], dataset.events), 4),
                                 "throughput_ratio": round(rates["ours"] / rates["drain3"], 2)}
        rows.append({"perturbation": variant, "ga": round(statistics.mean(x["ga"] for x in per.values()), 4),
                     "drain3_ga": round(statistics.mean(x["drain3_ga"] for x in per.values()), 4),
                     "datasets": per})
    return rows


def leave_one_out(datasets: list[Dataset], jobs: int) -> dict[str, Any]:
    """The protocol of grouping_loo.py: per dataset its fold, pooled calibration, and what the
    procedure picks on every dataset beside what ships."""
    protocol = Protocol(datasets)
    protocol.measure(jobs)
    folds = [protocol.fold(d) for d in datasets]
    c, coefficients = protocol.shipped()
    picked = protocol.grid[c]
    return {
        "folds": [{k: v for k, v in f.items() if k not in ("pairs", "kinds")} | {"calibration": calibration(f["pairs"])}
                  for f in folds],
        "calibration": calibration([p for f in folds for p in f["pairs"]]),
        "by_kind": {k: calibration([p for f in folds for p, what in zip(f["pairs"], f["kinds"], strict=True)
                                    if what == k]) for k in KINDS},
        "selected": describe(picked), "fitted": coefficients,
        "shipped": describe(CONFIG), "shipped_coefficients": confidence.COEFFICIENTS,
        "shipped_is_selected": picked == CONFIG and tuple(coefficients) == tuple(confidence.COEFFICIENTS),
        "grid": len(protocol.grid), "variants": list(protocol.variants),
    }


# --- the command ----------------------------------------------------------------------------------

def run_all(files: list[Path], db_url: str | None, repeat: int, loo: bool, jobs: int) -> dict[str, Any]:
    """Every figure of the report, for these files."""
    datasets = [load(path) for path in files]
    results = [measure(path, db_url, repeat, d) for path, d in zip(files, datasets, strict=True)]
    report: dict[str, Any] = {"datasets": results, "repeat": repeat}
    # Timed before the leave-one-out grid: timed after it, Bridge 1's runs were slower and Drain3's not
    # (Linux's original copy 1.2x there, 1.73x in a process that ran no grid).
    report["robustness"] = rows = robustness(datasets)
    if loo and len(datasets) > 1:
        report["loo"] = protocol = leave_one_out(datasets, jobs)
        for result, fold in zip(results, protocol["folds"], strict=True):
            result.update(loo_ga=fold["loo_ga"], loo_config=fold["config"], calibration=fold["calibration"])
    for result in results:
        result["robustness"] = {row["perturbation"]: row["datasets"][result["dataset"]] for row in rows
                                if row["perturbation"] != ORIGINAL}
    report["summary"] = summary(results, report.get("loo"))
    return report


def summary(results: list[dict[str, Any]], loo: dict[str, Any] | None) -> dict[str, Any]:
    """Means over the datasets, the goal's checks."""
    if not results:
        return {}
    out: dict[str, Any] = {f"mean_{k}": round(statistics.mean(r[k] for r in results), 4)
                           for k in ("ga", "pa", "fta", "drain3_ga", "drain3_pa", "drain3_fta")}
    out["min_throughput_ratio"] = min(r["throughput_ratio"] for r in results)
    perturbed = [x["throughput_ratio"] for r in results for x in r.get("robustness", {}).values()]
    if perturbed:
        out["min_perturbed_throughput_ratio"] = min(perturbed)
    if loo is not None:
        out["mean_loo_ga"] = round(statistics.mean(r["loo_ga"] for r in results), 4)
        out["loo_at_or_above_drain3"] = all(r["loo_ga"] >= r["drain3_ga"] for r in results)
        out["calibration"] = loo["calibration"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench grouping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="Loghub *_structured.csv files")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--db", action="store_true", help="also run each stream through PostgreSQL")
    parser.add_argument("--latency", action="store_true", help="match latency at 10^3..10^6 stored patterns")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="timed runs per dataset (median)")
    parser.add_argument("--no-loo", action="store_true", help="skip leave-one-dataset-out (quick)")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the leave-one-out grid (after timing)")
    parser.add_argument("--fit-confidence", action="store_true",
                        help="print the configuration and confidence coefficients the procedure picks on FILES")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the Grouping section of docs/benchmarks.md")
    parser.add_argument("--digest", action="store_true",
                        help="print a fingerprint of every decision on FILES (equal before and after a change that"
                             " must not change a decision)")
    args = parser.parse_args(argv)
    if not args.files and not args.latency:
        parser.error("give Loghub CSV files, or --latency")
    logging.getLogger("drain3").setLevel(logging.ERROR)  # "config file not found": the default is meant
    for handler in logging.getLogger(SERVICE).handlers:  # the report owns stdout; logs (migrations) go to stderr
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    if args.fit_confidence:
        return _fit(args.files, args.jobs)
    if args.digest:
        result = digest([load(path) for path in args.files])
        print(json.dumps(result, indent=2) if args.json else render_digest(result), end="\n" if args.json else "")
        return 0
    db_url = get_settings().database_url or DEFAULT_DATABASE_URL
    report = run_all(args.files, db_url if args.db else None, args.repeat, not args.no_loo, args.jobs)
    if args.latency:
        report["latency"] = match_latency(db_url)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report), end="")
    if args.write_docs:
        replace_section(render(report))
    return 0


def _fit(files: list[Path], jobs: int) -> int:
    """What the selection picks and fits on every file: matcher.CONFIG and confidence.COEFFICIENTS."""
    protocol = Protocol([load(path) for path in files])
    protocol.measure(jobs)
    c, coefficients = protocol.shipped()
    config = protocol.grid[c]
    print(f"CONFIG = GroupingConfig(threshold={config.threshold}, settle={config.settle}, options=Options("
          f"mask_quoted={config.options.mask_quoted}, mask_keyed={config.options.mask_keyed}),"
          f" one_word_margin={config.one_word_margin})")
    print(f"COEFFICIENTS: tuple[float, ...] = {tuple(coefficients)!r}")
    same = config == CONFIG and tuple(coefficients) == tuple(confidence.COEFFICIENTS)
    print(f"# shipped: {'the same' if same else 'DIFFERENT: paste the lines above'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
