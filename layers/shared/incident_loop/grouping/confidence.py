"""The calibrated confidence of a grouping decision: the probability that the message belongs with
the members of the pattern it joined (that they are one event, as a person labelling the log would
say).

A logistic model (Platt scaling) over features of the decision that both pattern indexes answer
alike (PostgreSQL and memory give the same confidence): how the message joined (exact signature or
fuzzy), how similar it was, how many constant words disagreed, and how specific its template is.
The coefficients are fitted, not chosen: `incident-loop bench grouping --fit-confidence FILE...`
fits them on labelled logs (Loghub-2k) and prints this module's COEFFICIENTS; the benchmark checks
that the shipped ones are the fit's, and measures calibration leave-one-dataset-out (the model is
fitted on seven systems and scored on the eighth).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

WILDCARD = "<*>"

FEATURES = ("bias", "fuzzy", "dissimilarity", "differing", "generalised", "log_constants", "wildcard_share",
            "soft_masks", "few_constants")
# Fitted by `incident-loop bench grouping --fit-confidence ../shared/data/loghub/*.csv` (all 8 systems).
COEFFICIENTS: tuple[float, ...] = (10.6892, -1.7219, -2.7755, -6.2908, -4.2805, -1.8298, -0.5535, 1.3319,
                                   -1.5898)


def template_features(tokens: Sequence[str]) -> tuple[float, float, float, float]:
    """(log_constants, wildcard_share, soft_masks, few_constants) of a template's tokens.

    A soft mask is a variable found by where it stands rather than by what it looks like (the value
    of key=value, a quoted value): it may hide a word that tells two events apart. Counted on the
    joined text, in C: the work is a few passes over the template, whatever its length."""
    n = len(tokens)
    wildcards = tokens.count(WILDCARD)
    text = " ".join(tokens)
    soft = text.count("=<*>") + text.count("'<*>'") + text.count('"<*>"') if "<*>" in text else 0
    constants = max(n - wildcards - soft, 0)
    return math.log1p(constants), (wildcards / n if n else 1.0), float(min(soft, 3)), float(constants <= 2)


def features(tokens: Sequence[str], fuzzy: bool, similarity: float, differing: int, generalised: int
             ) -> tuple[float, ...]:
    """The model's inputs for a decision that joined a pattern (see FEATURES)."""
    return (1.0, float(fuzzy), 1.0 - similarity, float(min(differing, 3)), float(min(generalised, 3)),
            *template_features(tokens))


def probability(x: Sequence[float], coefficients: Sequence[float] = COEFFICIENTS) -> float:
    """The logistic model's probability for inputs x."""
    z = sum(map(operator.mul, coefficients, x))
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def join_confidence(tokens: Sequence[str], fuzzy: bool = False, similarity: float = 1.0, differing: int = 0,
                    generalised: int = 0) -> float:
    """The calibrated probability that a message with these template tokens belongs with the pattern
    it joined: exactly, or fuzzily at this similarity with `differing` constant words unlike; of its
    constant words, `generalised` are <*> in the pattern's template."""
    return round(probability(features(tokens, fuzzy, similarity, differing, generalised)), 4)
