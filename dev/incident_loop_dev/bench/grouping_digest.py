"""`incident-loop bench grouping --digest FILES`: one fingerprint of every grouping decision.

A change meant to make the grouping faster or its code clearer must leave every decision as it was.
The digest hashes, for each message of each dataset and perturbed copy, under the shipped configuration
and the configurations next to it (every normaliser Option, never settling, the one-word margin on or
off), what decide() returned: the kind of join, the pattern (by the order patterns were made), the
confidence, the message's template, the pattern's template after it, the similarity, the differing and
the generalised words. Run it before and after the change: equal digests, equal decisions. Labels are
not read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from incident_loop.grouping.matcher import CONFIG, GroupingConfig, clear_memos, decide_template
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.grouping.normalise import Options
from incident_loop_dev.bench.grouping_loo import ERROR_TYPE, ONE_WORD_MARGINS, TENANT, VARIANTS, Dataset

# The shipped configuration, each normaliser Option on and off, never settling, and no join under the
# threshold.
CONFIGS: tuple[GroupingConfig, ...] = (
    CONFIG,
    *(replace(CONFIG, options=Options(quoted, keyed))
      for quoted in (False, True) for keyed in (False, True) if Options(quoted, keyed) != CONFIG.options),
    replace(CONFIG, settle=0),
    replace(CONFIG, one_word_margin=0.0 if CONFIG.one_word_margin else ONE_WORD_MARGINS[-1]),
)


def _decisions(messages: Sequence[str], config: GroupingConfig, into: Any) -> None:
    """Feed every decision of one stream, in order, to the hash `into`."""
    clear_memos()  # every stream from a cold start: the digest must not depend on what ran before
    index = MemoryPatternIndex()
    for message in messages:
        d = decide_template(config.template(message), message, ERROR_TYPE, TENANT, index, None, config)
        pattern = index.record(TENANT, d)
        into.update(repr((d.match_type, pattern, round(d.confidence, 12), d.template, d.merged_template,
                          round(d.similarity, 12), d.differing, d.generalised)).encode())
        into.update(b"\n")


def digest(datasets: Sequence[Dataset], variants: Sequence[str] = VARIANTS,
           configs: Sequence[GroupingConfig] = CONFIGS) -> dict[str, Any]:
    """Per dataset, and over all of them, the sha256 (first 16 hex digits) of its decisions."""
    total = hashlib.sha256()
    per: dict[str, str] = {}
    for dataset in datasets:
        one = hashlib.sha256()
        for variant in variants:
            for config in configs:
                _decisions(dataset.variant(variant), config, one)
        per[dataset.name] = one.hexdigest()[:16]
        total.update(f"{dataset.name}:{per[dataset.name]}\n".encode())
    return {"datasets": per, "all": total.hexdigest()[:16], "variants": len(variants), "configs": len(configs)}


def render(result: dict[str, Any]) -> str:
    lines = [f"{name:<12} {value}" for name, value in result["datasets"].items()]
    lines.append(f"{'all':<12} {result['all']}  ({result['variants']} copies x {result['configs']} configurations"
                 " per dataset)")
    return "\n".join(lines) + "\n"
