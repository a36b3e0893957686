"""The calibrated confidence of a grouping decision: the probability that the message belongs with
the members of the pattern it joined (its event is theirs, as a person labelling the log would say).

A logistic model (Platt scaling) over inputs of the decision that both pattern indexes answer alike
(PostgreSQL and memory give the same confidence): how the message joined (an exact signature hit,
or fuzzy), how similar it was and how many constant words disagreed, how many of its constant words
the pattern has generalised to <*> since (a hit on an alias of a fuzzy join), and how specific its
template is. The coefficients are fitted, not chosen: `incident-loop bench grouping
--fit-confidence FILE...` fits them on labelled logs (Loghub-2k) and prints COEFFICIENTS; the
benchmark checks that the shipped ones are the fit's, and measures the calibration
leave-one-dataset-out (fitted on seven systems, scored on the eighth; dev/.../bench/grouping_loo.py).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from incident_loop.grouping.memo import remember
from incident_loop.grouping.tokens import WILDCARD

FEATURES = ("bias", "fuzzy", "dissimilarity", "differing", "generalised", "log_constants", "wildcard_share",
            "soft_masks", "few_constants")
# Fitted by `incident-loop bench grouping --fit-confidence ../shared/data/loghub/*.csv` (all 8 systems).
COEFFICIENTS: tuple[float, ...] = (10.2953, -4.9867, -0.0996, -2.5132, -4.0566, -1.792, 0.0019, 1.3136, -0.8712)


def _counts(tokens: Sequence[str], text: str | None) -> tuple[int, int, int]:
    """(tokens, wildcards, soft masks) of a template: what its features are made of."""
    if text is None:
        text = " ".join(tokens)
    soft = text.count("=<*>") + text.count("'<*>'") + text.count('"<*>"') if "<*>" in text else 0
    return len(tokens), tokens.count(WILDCARD), soft


def _template_features(n: int, wildcards: int, soft: int) -> tuple[float, float, float, float]:
    constants = max(n - wildcards - soft, 0)
    return math.log1p(constants), (wildcards / n if n else 1.0), float(min(soft, 3)), float(constants <= 2)


def template_features(tokens: Sequence[str], text: str | None = None) -> tuple[float, float, float, float]:
    """(log_constants, wildcard_share, soft_masks, few_constants) of a template's tokens (`text`: the
    tokens joined, when the caller has it).

    A soft mask is a variable found by where it stands rather than by what it looks like (the value
    of key=value, a quoted value): it may hide a word that tells two events apart. Counted on the
    joined text, in C: the work is a few passes over the template, whatever its length."""
    return _template_features(*_counts(tokens, text))


def features(tokens: Sequence[str], fuzzy: bool, similarity: float, differing: int, generalised: int,
             text: str | None = None) -> tuple[float, ...]:
    """The model's inputs for a decision that joined a pattern (see FEATURES)."""
    return _features(fuzzy, similarity, min(differing, 3), min(generalised, 3), *_counts(tokens, text))


def _features(fuzzy: bool, similarity: float, differing: int, generalised: int, n: int, wildcards: int,
              soft: int) -> tuple[float, ...]:
    """features() from what they are made of (differing and generalised already capped at 3)."""
    return (1.0, float(fuzzy), 1.0 - similarity, float(differing), float(generalised),
            *_template_features(n, wildcards, soft))


def probability(x: Sequence[float], coefficients: Sequence[float] = COEFFICIENTS) -> float:
    """The logistic model's probability for inputs x."""
    z = sum(map(operator.mul, coefficients, x))
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# What the model's inputs are made of -> its rounded probability. They take few values (counts, and a
# similarity that is a ratio of small counts), so decisions share them: a bounded memo of a pure function.
_PROBABILITIES: dict[tuple[object, ...], float] = {}
_MAX_PROBABILITIES = 50_000


def join_confidence(tokens: Sequence[str], fuzzy: bool = False, similarity: float = 1.0, differing: int = 0,
                    generalised: int = 0, text: str | None = None) -> float:
    """The calibrated probability that a message with these template tokens belongs with the pattern
    it joined: exactly, or fuzzily at this similarity with `differing` constant words unlike; of its
    constant words, `generalised` are <*> in the pattern's template. (`text`: the tokens joined.)"""
    key = (fuzzy, similarity, min(differing, 3), min(generalised, 3), *_counts(tokens, text))
    found = _PROBABILITIES.get(key)
    if found is None:
        found = remember(_PROBABILITIES, key, round(probability(_features(*key)), 4), _MAX_PROBABILITIES)
    return found


def clear_memo() -> None:
    """Forget the memoised probabilities (benchmarks start cold; results never depend on the memo)."""
    _PROBABILITIES.clear()
