"""Reading the CloudWatch EMF lines a test captured from stdout."""

from __future__ import annotations

import json
from typing import Any


def metrics_in(text: str) -> list[dict[str, Any]]:
    """Every EMF document in captured output."""
    out = []
    for line in text.splitlines():
        if line.startswith('{"_aws"'):
            out.append(json.loads(line))
    return out


def total(text: str, name: str, **dimensions: str) -> float:
    """The sum of metric `name` over the EMF documents whose dimensions include `dimensions`."""
    value = 0.0
    for doc in metrics_in(text):
        if name in doc and all(doc.get(k) == v for k, v in dimensions.items()):
            values = doc[name]
            value += sum(values) if isinstance(values, list) else float(values)
    return value
