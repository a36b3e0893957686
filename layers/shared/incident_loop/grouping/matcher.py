"""Bridge 1's decision: exact signature, fuzzy sibling found through an indexed candidate key, or new.

The candidate key (token count and the first two constant tokens) is what the PostgreSQL index is
on, so finding the patterns to compare against is an index probe, never a scan, and needs no
pg_trgm (seed 000, issue 4). Similarity is computed here, in Python: the share of agreeing
positions, as in Drain. A fuzzy join generalises the pattern's template where the two differ, and
the joining message's signature becomes an alias of the pattern, so its next sibling is exact.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from incident_loop.grouping.normalise import WILDCARD, clear_memo, signature, template

EXACT_CONFIDENCE = 0.95
MAX_FUZZY_CONFIDENCE = 0.94  # a fuzzy join is never as sure as an exact one
DEFAULT_THRESHOLD = 0.75
# Patterns compared per candidate key at most, oldest first (as the PostgreSQL index hands them over).
MAX_CANDIDATES = 100


@dataclass(frozen=True, slots=True)
class PatternCandidate:
    """A stored pattern the matcher may compare a message with."""

    pattern_id: str
    template: str
    tokens: tuple[str, ...] = field(default=(), compare=False)

    def template_tokens(self) -> tuple[str, ...]:
        return self.tokens or _split(self.template)


class PatternIndex(Protocol):
    """Where Bridge 1 looks patterns up: PostgreSQL in the loop, memory in benchmarks and tests."""

    def by_signature(self, tenant_id: str, signature: str) -> str | None:
        """The pattern a signature belongs to (its own, or one it was joined to), or None."""
        ...

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]:
        """The patterns of this tenant and error type that share the candidate key (an index probe)."""
        ...


class MatchDecision:
    """What the matcher decided for one message; `pattern_id` is None for a new pattern."""

    __slots__ = ("match_type", "pattern_id", "confidence", "signature", "template", "merged_template",
                 "error_type", "message", "new_alias", "_tokens")

    def __init__(self, match_type: str, pattern_id: str | None, confidence: float, signature: str,
                 template: str, merged_template: str, error_type: str, message: str,
                 toks: tuple[str, ...] | None = None, new_alias: bool | None = None) -> None:
        self.match_type = match_type  # exact | fuzzy | new
        self.pattern_id = pattern_id
        self.confidence = confidence
        self.signature = signature
        self.template = template  # this message's template
        self.merged_template = merged_template  # the pattern's template once this message has joined
        self.error_type = error_type
        self.message = message
        # Whether recording it makes the signature an alias of the pattern.
        self.new_alias = match_type == "fuzzy" if new_alias is None else new_alias
        self._tokens = toks

    # Derived on demand: an exact hit (the common case) needs none of them.
    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens if self._tokens is not None else _split(self.template)

    @property
    def candidate_key(self) -> str:
        return candidate_key(self.tokens)

    @property
    def pattern_type(self) -> str:
        return classify(self.error_type, self.message)[0]

    @property
    def category(self) -> str:
        return classify(self.error_type, self.message)[1]

    def to_dict(self) -> dict[str, Any]:
        return {"match_type": self.match_type, "pattern_id": self.pattern_id, "confidence": self.confidence,
                "signature": self.signature, "template": self.template, "merged_template": self.merged_template,
                "candidate_key": self.candidate_key, "pattern_type": self.pattern_type, "category": self.category}

    def __repr__(self) -> str:
        return f"MatchDecision({self.match_type!r}, {self.pattern_id!r}, {self.confidence}, {self.template!r})"


def _split(template_text: str) -> tuple[str, ...]:
    return tuple(template_text.split(" ")) if template_text else ()


def candidate_key(template_tokens: Sequence[str]) -> str:
    """Token count and the first two constant tokens (Drain's prefix tree, flattened into one key):
    siblings share it, so it is what the PostgreSQL index is on."""
    lead = [t for t in template_tokens[:8] if t != WILDCARD][:2]
    return f"{len(template_tokens)}:{' '.join(lead) or WILDCARD}"


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement over the positions where either side is constant; different lengths score 0.

    Positions variable on both sides say nothing, so they are left out (otherwise two messages
    made mostly of ids look alike). A constant facing a wildcard counts half.
    """
    if len(a) != len(b) or not a:
        return 0.0
    same = 0.0
    counted = 0
    for x, y in zip(a, b, strict=True):
        if x == y:
            if x != WILDCARD:
                same += 1
                counted += 1
        else:
            counted += 1
            if x == WILDCARD or y == WILDCARD:
                same += 0.5
    return same / counted if counted else 1.0


def merge(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """The template covering both: positions that differ become <*>."""
    return [x if x == y else WILDCARD for x, y in zip(a, b, strict=True)]


_CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("policy", re.compile(r"polic|guardrail|blocked by|not allowed by|disallowed", re.I)),
    ("rate_limit", re.compile(r"rate.?limit|too many requests|\b429\b|throttl|quota", re.I)),
    ("timeout", re.compile(r"time(d|s)?[ _-]?out|deadline exceeded", re.I)),
    ("auth", re.compile(r"unauthori[sz]|forbidden|\b40[13]\b|authenticat|credential|token expired|permission",
                        re.I)),
    ("validation", re.compile(r"valid|schema|pars(e|ing)|malformed|unexpected field|type ?error|not a number",
                              re.I)),
    ("resource", re.compile(r"memory|disk|resource|capacity|exhausted|context length|\boom\b|no space", re.I)),
    ("http_error", re.compile(r"\bhttp|\b5\d\d\b|connection (reset|refused|error)|unavailable|bad gateway", re.I)),
]
_PATTERN_TYPES = {"policy": "policy_violation", "rate_limit": "rate_limit", "timeout": "timeout",
                  "auth": "auth_error", "validation": "validation", "resource": "resource",
                  "http_error": "http_error"}


def classify(error_type: str, message: str) -> tuple[str, str]:
    """(pattern_type, category) from the error type first, then the message; never empty."""
    for text in (error_type, message):
        for category, pattern in _CATEGORIES:
            if pattern.search(text):
                return _PATTERN_TYPES[category], category
    return "error", "unknown"


# (error type, template) -> signature. Memoising a pure function: templates recur (that is the point),
# and a dictionary lookup is cheaper than sha256. Bounded; the result never depends on it.
_SIGNATURES: dict[tuple[str, str], str] = {}
_MAX_SIGNATURES = 50_000


def _signature(error_type: str, text: str) -> str:
    sig = signature(error_type, text)
    if len(_SIGNATURES) >= _MAX_SIGNATURES:
        _SIGNATURES.clear()
    _SIGNATURES[(error_type, text)] = sig
    return sig


def clear_memos() -> None:
    """Forget the memoised verdicts and signatures (benchmarks start cold; results never depend on them)."""
    clear_memo()
    _SIGNATURES.clear()


def decide(message: str, error_type: str, tenant_id: str, index: PatternIndex,
           threshold: float = DEFAULT_THRESHOLD) -> MatchDecision:
    """Exact signature hit (0.95), else the most similar candidate at or above `threshold`, else new.

    Pure apart from reading `index`: applying the decision is the caller's (record_match, or
    MemoryPatternIndex.record).
    """
    text = template(message)
    sig = _SIGNATURES.get((error_type, text)) or _signature(error_type, text)
    found = index.by_signature(tenant_id, sig)
    if found is not None:
        return MatchDecision("exact", found, EXACT_CONFIDENCE, sig, text, text, error_type, message)
    toks = _split(text)
    best_score, best = 0.0, None
    for candidate in index.candidates(tenant_id, error_type, candidate_key(toks)):
        score = similarity(toks, candidate.template_tokens())
        # Ties go to the smaller template: the same choice whichever index (and id scheme) answers.
        if score > best_score or (score == best_score and best is not None and score > 0
                                  and candidate.template < best.template):
            best_score, best = score, candidate
    if best is not None and best.template == text:  # the pattern's template itself: exact, and worth an alias
        return MatchDecision("exact", best.pattern_id, EXACT_CONFIDENCE, sig, text, text, error_type, message, toks,
                             new_alias=True)
    if best is not None and best_score >= threshold:
        merged = " ".join(merge(toks, best.template_tokens()))
        return MatchDecision("fuzzy", best.pattern_id, round(min(best_score, MAX_FUZZY_CONFIDENCE), 4), sig,
                             text, merged, error_type, message, toks)
    return MatchDecision("new", None, 0.0, sig, text, text, error_type, message, toks)


def decision_arg(args: tuple[Any, ...]) -> MatchDecision:
    """`decision` or the older `error_type, decision` (the error type is the decision's own)."""
    if len(args) == 1 and isinstance(args[0], MatchDecision):
        return args[0]
    if len(args) == 2 and isinstance(args[1], MatchDecision):
        if args[0] != args[1].error_type:
            raise ValueError(f"error type {args[0]!r} is not the decision's {args[1].error_type!r}")
        return args[1]
    raise TypeError("expected a MatchDecision (optionally preceded by its error type)")


class MemoryPatternIndex:
    """An in-memory PatternIndex with the same semantics as the PostgreSQL one."""

    def __init__(self) -> None:
        self._signatures: dict[tuple[str, str], str] = {}
        self._by_key: dict[tuple[str, str, str], list[PatternCandidate]] = {}
        self._where: dict[str, tuple[list[PatternCandidate], int]] = {}
        self.counts: defaultdict[str, int] = defaultdict(int)
        self._next = 0

    def by_signature(self, tenant_id: str, signature: str) -> str | None:
        return self._signatures.get((tenant_id, signature))

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> Sequence[PatternCandidate]:
        found = self._by_key.get((tenant_id, error_type, candidate_key), ())
        return found if len(found) <= MAX_CANDIDATES else found[:MAX_CANDIDATES]  # oldest first

    def template(self, pattern_id: str) -> str:
        siblings, at = self._where[pattern_id]
        return siblings[at].template

    @overload
    def record(self, tenant_id: str, decision: MatchDecision, /) -> str: ...

    @overload
    def record(self, tenant_id: str, error_type: str, decision: MatchDecision, /) -> str: ...

    def record(self, tenant_id: str, decision: Any, legacy: Any = None, /) -> str:
        """Apply a decision (what record_match does in PostgreSQL); returns the pattern id.

        Also accepts the older (tenant_id, error_type, decision)."""
        if legacy is not None:
            decision = decision_arg((decision, legacy))
        pattern_id = decision.pattern_id
        if decision.match_type == "exact" and pattern_id is not None:  # the common case: only the count
            self.counts[pattern_id] += 1
            if decision.new_alias:
                self._signatures.setdefault((tenant_id, decision.signature), pattern_id)
            return pattern_id
        if pattern_id is None:
            known = self._signatures.get((tenant_id, decision.signature))
            if known is not None:  # recorded since the decision was made: join it, as record_match does
                return self.record(tenant_id, MatchDecision("exact", known, EXACT_CONFIDENCE, decision.signature,
                                                            decision.template, decision.template,
                                                            decision.error_type, decision.message))
            self._next += 1
            pattern_id = f"pat_{self._next:016x}"
            siblings = self._by_key.setdefault((tenant_id, decision.error_type, decision.candidate_key), [])
            self._where[pattern_id] = (siblings, len(siblings))
            siblings.append(PatternCandidate(pattern_id, decision.template, decision.tokens))
        elif decision.match_type == "fuzzy":  # generalise against the template as it is now
            siblings, at = self._where[pattern_id]
            merged = tuple(merge(decision.tokens, siblings[at].template_tokens()))
            siblings[at] = PatternCandidate(pattern_id, " ".join(merged), merged)
        self._signatures.setdefault((tenant_id, decision.signature), pattern_id)
        self.counts[pattern_id] += 1
        return pattern_id
