"""Comparing templates position by position: similarity (as in Drain), the constant words that
disagree, the template covering both, and the words a pattern has generalised away. C-level passes:
the work is linear in the templates' length."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, count
from operator import eq

from incident_loop.grouping.tokens import WILDCARD


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement over the positions where either side is constant; different lengths score 0.

    Positions variable on both sides say nothing, so they are left out (otherwise two messages
    made mostly of ids look alike). A constant facing a wildcard counts half.
    """
    return compare(a, b)[0]


def differing(a: Sequence[str], b: Sequence[str]) -> int:
    """Positions where both sides hold a different constant word."""
    return compare(a, b)[1]


def compare(a: Sequence[str], b: Sequence[str], a_constants: Sequence[str | None] | None = None
            ) -> tuple[float, int]:
    """(similarity, differing constant words) of two templates' tokens, in C-level passes: the work
    is linear in the length, whatever the tokens. `a_constants` is `a` with None for its wildcards
    (constants(a)), when the caller compares `a` with many."""
    return agreement(a, b, a_constants)[:2]  # type: ignore[return-value]


def agreement(a: Sequence[str], b: Sequence[str], a_constants: Sequence[str | None] | None = None,
              b_places: Sequence[int] | None = None) -> tuple[float, int, int, int]:
    """compare()'s (similarity, differing constant words), then the constant words of `a` that `b` holds
    as <*> (generalised(a, b)) and the positions alike, from the same passes. `b_places`: where `b` holds
    <*> (wildcard_places(b)), when the caller keeps it: `a` is then looked at only there."""
    n = len(a)
    if n != len(b) or not n:
        return 0.0, 0, 0, 0
    equal = sum(map(eq, a, b))
    wild_a = a.count(WILDCARD)
    wild_b = b.count(WILDCARD) if b_places is None else len(b_places)
    both = 0
    if wild_a and wild_b:
        if b_places is not None:
            both = sum(map(WILDCARD.__eq__, map(a.__getitem__, b_places)))
        else:
            both = equal - sum(map(eq, constants(a) if a_constants is None else a_constants, b))
    one_sided = wild_a + wild_b - 2 * both  # a constant facing a wildcard
    counted = n - both
    same = equal - both + 0.5 * one_sided
    return (same / counted if counted else 1.0), n - equal - one_sided, wild_b - both, equal


_NONE_FOR_WILDCARD = {WILDCARD: None}


def wildcard_places(tokens: Sequence[str]) -> tuple[int, ...]:
    """The positions of the wildcards among the tokens, in order (a C-level pass)."""
    return tuple(compress(count(), map(WILDCARD.__eq__, tokens)))


def constants(tokens: Sequence[str]) -> tuple[str | None, ...]:
    """The tokens with None for each wildcard (None equals no token)."""
    return tuple(map(_NONE_FOR_WILDCARD.get, tokens, tokens))


def merge(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """The template covering both: positions that differ become <*>."""
    return [x if x == y else WILDCARD for x, y in zip(a, b, strict=True)]


def generalised(tokens: Sequence[str], pattern_tokens: Sequence[str],
                token_constants: Sequence[str | None] | None = None) -> int:
    """Constant words of a message that the pattern's template holds as <*> (it generalised them).
    `token_constants`: constants(tokens), when the caller has it."""
    if len(tokens) != len(pattern_tokens):
        return 0
    wild = pattern_tokens.count(WILDCARD)
    if not wild:
        return 0
    if WILDCARD not in tokens:
        return wild
    mine = constants(tokens) if token_constants is None else token_constants
    return wild - (sum(map(eq, tokens, pattern_tokens)) - sum(map(eq, mine, pattern_tokens)))


def siblings(tokens: Sequence[str], others: Sequence[Sequence[str]], most: int) -> list[int]:
    """The indices (in order) of the templates one constant word apart from `tokens` at one place, not the first
    token, and alike everywhere else (or <*> there in theirs: a value the template met already, where `tokens` may
    hold a word that varies on every line), when with `tokens` they hold `most` distinct words at that place; else none.
    Of two such places, the first: the answer does not depend on the order of `others` (the PostgreSQL index and
    the in-memory one may hand over candidates created in one transaction in another order). Linear in the
    templates' length."""
    at: dict[int, list[int]] = {}
    for i, theirs in enumerate(others):
        if len(theirs) != len(tokens):
            continue
        places = [k for k, (a, b) in enumerate(zip(tokens, theirs, strict=True)) if a != b and b != WILDCARD]
        if len(places) != 1:
            continue
        place = places[0]
        if place and WILDCARD not in (tokens[place], theirs[place]):
            at.setdefault(place, []).append(i)
    for place in sorted(at):
        found = at[place]
        if len({tokens[place]} | {others[i][place] for i in found}) >= most:
            return found
    return []
