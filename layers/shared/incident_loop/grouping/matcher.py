"""Bridge 1's decision: exact signature, fuzzy sibling found through an indexed candidate key, or new.

The candidate key (token count and the first token, or <*> when it holds a variable) is what the
PostgreSQL index is on, so finding the patterns to compare against is an index probe, never a scan,
and needs no pg_trgm (seed 000, issue 4). Similarity is computed here, in Python: the share of
agreeing positions, as in Drain (compare.py). A fuzzy join generalises the pattern's template where
the two differ, and the joining message's signature becomes an alias of the pattern, so its next
sibling is exact; a pattern that has settled (enough members) no longer takes a message whose
constant words differ from its template's, and one that has not also takes a message one constant
word apart a little under the threshold (a short message's one word that varies).

Values that come in runs (a host name for a few dozen lines, then another) settle a pattern per run.
Once GroupingConfig.merge_after distinct words have been seen at one place of siblings otherwise
alike (or <*> in theirs), the siblings merge into one pattern (both indexes record it alike).

Every decision to join carries a calibrated confidence (confidence.py): the probability that the
message belongs with the pattern's members. What is tunable (the similarity threshold, when a
pattern settles, the one-word margin, the normaliser's Options) is one GroupingConfig for every
system, CONFIG, picked by the benchmark's leave-one-dataset-out procedure
(dev/incident_loop_dev/bench/grouping_loo.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from incident_loop.grouping.classify import classify
from incident_loop.grouping.compare import (
    agreement,
    compare,
    constants,
    differing,
    generalised,
    merge,
    siblings,
    similarity,
    wildcard_places,
)
from incident_loop.grouping.confidence import clear_memo as clear_probabilities
from incident_loop.grouping.confidence import join_confidence
from incident_loop.grouping.decision import MatchDecision, candidate_key, decision_arg
from incident_loop.grouping.decision import split_template as _split
from incident_loop.grouping.memo import remember
from incident_loop.grouping.normalise import (
    MAX_MEMO_TEXT,
    Normaliser,
    Options,
    clear_memo,
    normaliser,
    signature,
)

__all__ = ["CONFIG", "EXACT_CONFIDENCE", "GroupingConfig", "MatchDecision", "PatternCandidate",
           "PatternIndex", "candidate_key", "classify", "compare", "constants", "decide", "decide_template",
           "decision_arg", "differing", "exact_confidence", "generalised", "merge", "similarity"]

# The seed's figure for an exact signature hit (seed 000: "exact hash, 0.95 confidence"). Bridge 1
# reports it for exact hits, whose calibrated probability is at least this (docs/benchmarks.md).
EXACT_CONFIDENCE = 0.95
DEFAULT_THRESHOLD = 0.8
# Patterns compared per candidate key at most, oldest first (as the PostgreSQL index hands them over).
MAX_CANDIDATES = 100


@dataclass(frozen=True)
class GroupingConfig:
    """What the grouping decides with: one configuration for every system."""

    threshold: float = DEFAULT_THRESHOLD  # fuzzy join at this similarity or above
    # A pattern with this many members has settled: a message whose constant words differ from its
    # template's joins it no more (a word that held for that many messages is part of the event, not
    # a value). 0: never settles.
    settle: int = 3
    options: Options = Options()  # the normaliser's
    # A pattern that has not settled also takes a message this much under the threshold when the two
    # differ in one constant word and are alike everywhere else: in a short message one word that
    # varies is a large share ("Invalid user admin from <*>" and "Invalid user test from <*>" are
    # 0.75 alike). 0: only at the threshold.
    one_word_margin: float = 0.05
    # A message that would start a pattern, one constant word apart (at the same place) from enough siblings that
    # this many distinct words have been seen there, joins one of them instead (_decide), generalised there, and
    # the others are absorbed into it: so many values at one place say it holds a value, not a word that tells
    # events apart (values that come in runs settle a pattern per run). 0: never.
    merge_after: int = 8
    normaliser: Normaliser = field(init=False, repr=False, compare=False)
    template: Callable[[str], str] = field(init=False, repr=False, compare=False)  # the normaliser's

    def __post_init__(self) -> None:
        object.__setattr__(self, "normaliser", normaliser(self.options))
        object.__setattr__(self, "template", self.normaliser.template)


# What `incident-loop bench grouping --fit-confidence` picks on all eight Loghub-2k systems (the same
# procedure, run on seven, picks each leave-one-dataset-out fold's configuration); the defaults above.
CONFIG = GroupingConfig(threshold=0.8, settle=3, options=Options(mask_quoted=False, mask_keyed=False),
                        one_word_margin=0.0)


@dataclass(slots=True)
class PatternCandidate:
    """A stored pattern the matcher may compare a message with (the matcher only reads it)."""

    pattern_id: str
    template: str
    tokens: tuple[str, ...] = field(default=(), compare=False)
    count: int = field(default=0, compare=False)  # its members (occurrences) so far; live in memory
    places: tuple[int, ...] | None = field(default=None, compare=False, repr=False)  # where it holds <*>

    def template_tokens(self) -> tuple[str, ...]:
        if not self.tokens:
            self.tokens = _split(self.template)
        return self.tokens

    def wildcard_places(self) -> tuple[int, ...]:
        """Where the template holds <*> (worked out once: a candidate is compared with many messages)."""
        if self.places is None:
            self.places = wildcard_places(self.tokens or self.template_tokens())
        return self.places


class PatternIndex(Protocol):
    """Where Bridge 1 looks patterns up: PostgreSQL in the loop, memory in benchmarks and tests."""

    def by_signature(self, tenant_id: str, signature: str) -> PatternCandidate | None:
        """The pattern a signature belongs to (its own, or one it was joined to) as it is now, or None."""
        ...

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]:
        """The patterns of this tenant and error type that share the candidate key (an index probe)."""
        ...


# (error type, template) -> signature; template -> confidence of an exact hit on it (computed when a
# hit needs it); (this template, the pattern's) -> (confidence of an exact hit, constant words
# generalised away). Memoising pure functions: templates recur (that is the point), and a dictionary
# lookup is cheaper than sha256. Bounded; the result never depends on them.
_SIGNATURES: dict[tuple[str, str], str] = {}
_EXACT: dict[str, float] = {}
_GENERALISED: dict[tuple[str, str], tuple[float, int]] = {}
_MAX_SIGNATURES = 20_000


def _signature(error_type: str, text: str) -> str:
    found = signature(error_type, text)
    return remember(_SIGNATURES, (error_type, text), found, _MAX_SIGNATURES) if len(text) <= MAX_MEMO_TEXT else found


def _exact(text: str) -> float:
    found = join_confidence(_split(text), text=text)
    return remember(_EXACT, text, found, _MAX_SIGNATURES) if len(text) <= MAX_MEMO_TEXT else found


def _exact_on_generalised(text: str, pattern_template: str) -> tuple[float, int]:
    toks = _split(text)
    count = generalised(toks, _split(pattern_template))
    found = (join_confidence(toks, generalised=count, text=text), count)
    if len(text) > MAX_MEMO_TEXT:  # the pattern's template is about as long (as many tokens)
        return found
    return remember(_GENERALISED, (text, pattern_template), found, _MAX_SIGNATURES)


def exact_confidence(template_text: str, pattern_template: str | None = None) -> float:
    """The calibrated confidence of an exact hit of this template on a pattern (whose template, if it
    was generalised since, is `pattern_template`)."""
    toks = _split(template_text)
    count = 0 if pattern_template is None else generalised(toks, _split(pattern_template))
    return join_confidence(toks, generalised=count)


def clear_memos() -> None:
    """Forget the memoised verdicts and signatures (benchmarks start cold; results never depend on them)."""
    clear_memo()
    clear_probabilities()
    _SIGNATURES.clear()
    _EXACT.clear()
    _GENERALISED.clear()


def decide(message: str, error_type: str, tenant_id: str, index: PatternIndex, threshold: float | None = None,
           config: GroupingConfig = CONFIG) -> MatchDecision:
    """Exact signature hit, else the most similar candidate at or above the threshold (the config's
    unless given), else new; a join carries its calibrated confidence, a new pattern 0.

    Pure apart from reading `index`: applying the decision is the caller's (record_match, or
    MemoryPatternIndex.record).
    """
    return decide_template(config.template(message), message, error_type, tenant_id, index, threshold, config)


def decide_template(text: str, message: str, error_type: str, tenant_id: str, index: PatternIndex,
                    threshold: float | None = None, config: GroupingConfig = CONFIG) -> MatchDecision:
    """decide() for a message already normalised under the config's options (`text` is its template)."""
    sig = _SIGNATURES.get((error_type, text)) or _signature(error_type, text)
    hit = index.by_signature(tenant_id, sig)
    if hit is not None:  # the common cases, inline: an exact hit on the template, or on one of its aliases
        if hit.template == text:
            return MatchDecision("exact", hit.pattern_id, _EXACT.get(text) or _exact(text), sig, text, text,
                                 error_type, message)
        # A signature the pattern absorbed, or its own, on a template generalised since.
        sure, count = _GENERALISED.get((text, hit.template)) or _exact_on_generalised(text, hit.template)
        return MatchDecision("exact", hit.pattern_id, sure, sig, text, text, error_type, message, generalised=count)
    return _decide(text, message, error_type, tenant_id, index, threshold, config, sig)


def _decide(text: str, message: str, error_type: str, tenant_id: str, index: PatternIndex, threshold: float | None,
            config: GroupingConfig, sig: str) -> MatchDecision:
    """No pattern holds the signature: the most similar candidate at or above the threshold (or, one word
    apart from a pattern not yet settled, within the one-word margin under it), or new."""
    toks = _split(text)
    floor = config.threshold if threshold is None else threshold
    near, last = floor - config.one_word_margin, len(toks) - 1
    best_score, best_unlike, best, count, alike = 0.0, 0, None, 0, 0
    candidates = index.candidates(tenant_id, error_type, candidate_key(toks))
    apart: list[PatternCandidate] = []  # alike everywhere but one place: the merge's siblings are among them
    for candidate in candidates:
        score, unlike, generalised_words, equal = agreement(toks, candidate.template_tokens(), None,
                                                            candidate.wildcard_places())
        if unlike == 1 and equal + generalised_words == last:
            apart.append(candidate)
        settled = config.settle and candidate.count >= config.settle
        if score < floor:  # one constant word apart, alike elsewhere, from a pattern not yet settled
            if score < near or unlike != 1 or equal != last or settled:
                continue
        elif unlike and settled:
            continue
        # Ties go to the smaller template: the same choice whichever index (and id scheme) answers.
        if best is None or score > best_score or (score == best_score and candidate.template < best.template):
            best_score, best_unlike, best, count, alike = score, unlike, candidate, generalised_words, equal
    if best is not None and best.template == text:  # the pattern's template itself: exact, and worth an alias
        return MatchDecision("exact", best.pattern_id, _EXACT.get(text) or _exact(text), sig, text, text, error_type,
                             message, toks, new_alias=True)
    if best is not None:
        sure = join_confidence(toks, True, best_score, best_unlike, count, text)
        # The pattern's template covers the message already (every position alike, or <*> in the pattern's)
        # when the agreeing positions and the generalised words make up the whole: it stays as it is.
        covered = alike + count == len(toks)
        merged = best.template if covered else " ".join(merge(toks, best.template_tokens()))
        return MatchDecision("fuzzy", best.pattern_id, sure, sig, text, merged, error_type, message, toks,
                             similarity=best_score, differing=best_unlike, generalised=count)
    if config.merge_after and len(apart) >= config.merge_after - 1:
        found = siblings(toks, [c.template_tokens() for c in apart], config.merge_after)
        if found:  # the message joins the sibling whose template sorts first, which absorbs the rest: the same
            # whichever index answers, in whatever order it hands the candidates over
            target, *others = sorted((apart[i] for i in found), key=lambda c: c.template)
            cover = toks  # the survivor's template covers the absorbed ones too (they may hold <*> elsewhere)
            for other in others:
                cover = tuple(merge(cover, other.template_tokens()))
            merged = merge(cover, target.template_tokens())
            if not _covered_by_another(merged, candidates, {apart[i].pattern_id for i in found}):
                score, unlike, count, _ = agreement(toks, target.template_tokens())
                sure = join_confidence(toks, True, score, unlike, count, text)
                return MatchDecision("fuzzy", target.pattern_id, sure, sig, text, " ".join(merged), error_type, message,
                                     toks, similarity=score, differing=unlike, generalised=count,
                                     absorbed=tuple(c.pattern_id for c in others), cover=cover)
    return MatchDecision("new", None, 0.0, sig, text, text, error_type, message, toks)


def _covered_by_another(tokens: Sequence[str], candidates: Sequence[PatternCandidate], merging: set[str]) -> bool:
    """Whether a candidate outside the merge already holds every word of `tokens` where it holds a word (<*>
    elsewhere): the merge would make a second pattern of its template, and the two would tie on every later message
    (which one took it would hang on the order the index hands them over). The message stays a pattern of its own."""
    n = len(tokens)
    for candidate in candidates:
        if candidate.pattern_id not in merging:
            _, _, wider, alike = agreement(tokens, candidate.template_tokens())
            if alike + wider == n:
                return True
    return False
