"""The confidence model's fit and its measures: logistic regression on the join decisions, log loss,
and calibration (expected calibration error, precision on the most confident decisions)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from incident_loop.grouping.confidence import FEATURES, probability

BINS = 10  # expected calibration error over this many equal-width bins
TOP_SHARE = 0.8  # precision is measured on this share of the most confident join decisions
# Inputs the L2 penalty leaves alone: the intercept and what kind of join it is (fuzzy; an exact hit on
# words the pattern generalised). Fuzzy joins are few, and a penalty on their indicator would pull
# their confidence towards the exact hits'.
UNPENALISED = tuple(FEATURES.index(name) for name in ("bias", "fuzzy", "generalised"))


def fit(data: Iterable[tuple[tuple[float, ...], bool]], l2: float = 1e-2, steps: int = 50) -> tuple[float, ...]:
    """Logistic regression (Newton's method, an L2 penalty off the UNPENALISED inputs) on (inputs,
    outcome). Identical inputs are counted once with their weight: it costs what distinct inputs do."""
    counts: Counter[tuple[tuple[float, ...], bool]] = Counter(data)
    rows = [(x, ok, n) for (x, ok), n in counts.items()]
    if not rows:
        return tuple(0.0 for _ in FEATURES)
    d = len(rows[0][0])
    w = [0.0] * d
    for _ in range(steps):
        grad = [0.0] * d
        hess = [[0.0] * d for _ in range(d)]
        for x, ok, n in rows:
            p = probability(x, w)
            r, s = n * (p - float(ok)), n * p * (1 - p)
            for i in range(d):
                grad[i] += r * x[i]
                row = hess[i]
                for j in range(i, d):
                    row[j] += s * x[i] * x[j]
        for i in range(d):
            for j in range(i):
                hess[i][j] = hess[j][i]
            if i not in UNPENALISED:
                grad[i] += l2 * w[i]
                hess[i][i] += l2
            hess[i][i] += 1e-6
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(si) for si in step) < 1e-9:
            break
    return tuple(round(wi, 4) for wi in w)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """x with a x = b (Gaussian elimination with partial pivoting; a is small)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col] / m[col][col]
                m[r] = [vr - f * vc for vr, vc in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def log_loss(pairs: Sequence[tuple[float, bool]]) -> float:
    """Mean negative log-likelihood of the outcomes under the confidences (a proper scoring rule)."""
    if not pairs:
        return 0.0
    return -sum(math.log(max(p if ok else 1.0 - p, 1e-12)) for p, ok in pairs) / len(pairs)


def calibration(pairs: Sequence[tuple[float, bool]]) -> dict[str, Any]:
    """Expected calibration error, precision on the TOP_SHARE most confident, and the mean confidence
    beside the share correct, of (confidence, belongs) pairs."""
    if not pairs:
        return {"decisions": 0}
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(BINS)]
    for p, ok in pairs:
        bins[min(int(p * BINS), BINS - 1)].append((p, ok))
    ece = sum(abs(statistics.mean(p for p, _ in b) - statistics.mean(float(ok) for _, ok in b)) * len(b)
              for b in bins if b) / len(pairs)
    ranked = sorted(pairs, key=lambda pair: -pair[0])  # stable: ties keep the stream's order
    top = ranked[: math.ceil(TOP_SHARE * len(ranked))]
    return {"decisions": len(pairs), "ece": round(ece, 4),
            "top80_precision": round(sum(ok for _, ok in top) / len(top), 4),
            "top80_min_confidence": round(top[-1][0], 4), "min_confidence": round(ranked[-1][0], 4),
            "mean_confidence": round(statistics.mean(p for p, _ in pairs), 4), "log_loss": round(log_loss(pairs), 4),
            "accuracy": round(sum(ok for _, ok in pairs) / len(pairs), 4)}
