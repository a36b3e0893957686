"""The EMF documents Powertools prints when metrics are flushed, read as a CloudWatch alarm reads them."""

from __future__ import annotations

import json
from typing import Any


def flushed(capsys: Any) -> list[dict[str, Any]]:
    """Flush the shared Powertools metric set and return every EMF document printed since the last read."""
    from incident_loop.observability import metrics

    if metrics.metric_set:
        metrics.flush_metrics()
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def values(docs: list[dict[str, Any]], name: str, namespace: str | None = None,
           dimensions: tuple[str, ...] = ("service",), **dims: str) -> list[float]:
    """Every value of `name` in documents of that namespace (any: the tests' own is set by the environment) whose
    dimension set is exactly `dimensions`
    (what a CloudWatch alarm with exactly those dimensions would see), with those dimension values."""
    found: list[float] = []
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if namespace is not None and directive["Namespace"] != namespace:
                continue
            if not any(m["Name"] == name for m in directive["Metrics"]):
                continue
            if not any(sorted(d) == sorted(dimensions) for d in directive["Dimensions"]):
                continue
            if any(doc.get(k) != v for k, v in dims.items()):
                continue
            raw = doc[name]
            found.extend(raw if isinstance(raw, list) else [raw])
    return found
