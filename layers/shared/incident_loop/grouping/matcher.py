"""Bridge 1's decision: exact signature, fuzzy sibling through an indexed candidate key, or new.

The candidate key (token count and the first two constant tokens) is what the PostgreSQL index is
on, so finding the patterns to compare against is an index probe, never a scan, and needs no
pg_trgm. Similarity is the share of positions whose tokens agree (wildcards agree with
anything), as in Drain; a fuzzy join generalises the pattern's template where they differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from incident_loop.grouping.normalise import WILDCARD, _tokens, signature

EXACT_CONFIDENCE = 0.95
MAX_FUZZY_CONFIDENCE = 0.94


@dataclass(frozen=True)
class PatternCandidate:
    pattern_id: str
    template: str


class PatternIndex(Protocol):
    """Where Bridge 1 looks patterns up (PostgreSQL in the loop, memory in benchmarks and tests)."""

    def by_signature(self, tenant_id: str, signature: str) -> str | None: ...

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> list[PatternCandidate]: ...


@dataclass  # not frozen: a frozen dataclass costs a setattr call per field on the hot path
class MatchDecision:
    """What the matcher decided for one message; `pattern_id` is None for a new pattern."""

    match_type: str  # exact | fuzzy | new
    pattern_id: str | None
    confidence: float
    signature: str
    template: str
    merged_template: str
    candidate_key: str
    error_type: str
    message: str

    # Classification is only needed when a pattern is created or reported, not on every match.
    @cached_property
    def _classified(self) -> tuple[str, str]:
        return classify(self.error_type, self.message)

    @property
    def pattern_type(self) -> str:
        return self._classified[0]

    @property
    def category(self) -> str:
        return self._classified[1]


def candidate_key(template_tokens: Sequence[str]) -> str:
    """Token count and the first two constant tokens (Drain's prefix): siblings share it, so it is
    what the PostgreSQL index is on."""
    lead = [t for t in template_tokens[:8] if t != WILDCARD][:2]
    return f"{len(template_tokens)}:{' '.join(lead) or WILDCARD}"


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement over the positions where either side is constant; different lengths: 0.

    Positions that are variable on both sides say nothing, so they are left out (otherwise two
    messages made mostly of ids look alike). A constant facing a wildcard counts half.
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
            if WILDCARD in (x, y):
                same += 0.5
    return same / counted if counted else 1.0


def merge(a: Sequence[str], b: Sequence[str]) -> list[str]:
    return [x if x == y else WILDCARD for x, y in zip(a, b, strict=True)]


_CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("policy", re.compile(r"polic|forbidden by|guardrail|blocked by", re.I)),
    ("rate_limit", re.compile(r"rate.?limit|too many requests|\b429\b|throttl|quota", re.I)),
    ("timeout", re.compile(r"time[d ]?out|deadline exceeded", re.I)),
    ("auth", re.compile(r"unauthori|forbidden|\b40[13]\b|auth|credential|token expired|permission", re.I)),
    ("validation", re.compile(r"valid|schema|parse|malformed|unexpected field|type ?error|not a number", re.I)),
    ("resource", re.compile(r"memory|disk|resource|capacity|exhausted|context length|oom", re.I)),
    ("http_error", re.compile(r"\bhttp\b|\b5\d\d\b|connection (reset|refused)|unavailable|bad gateway", re.I)),
]
_PATTERN_TYPES = {
    "policy": "policy_violation",
    "rate_limit": "rate_limit",
    "timeout": "timeout",
    "auth": "auth_error",
    "validation": "validation",
    "resource": "resource",
    "http_error": "http_error",
}


def classify(error_type: str, message: str) -> tuple[str, str]:
    """(pattern_type, category) from the error type first, then the message; never empty."""
    for text in (error_type, message):
        for category, pattern in _CATEGORIES:
            if pattern.search(text):
                return _PATTERN_TYPES[category], category
    return "error", "unknown"


def decide(
    message: str, error_type: str, tenant_id: str, index: PatternIndex, threshold: float = 0.75
) -> MatchDecision:
    """Exact signature hit (0.95), else the most similar candidate above `threshold`, else new."""
    toks = _tokens(message)
    text = " ".join(toks)
    sig = signature(error_type, text)
    key = candidate_key(toks)
    found = index.by_signature(tenant_id, sig)
    if found is not None:
        return MatchDecision("exact", found, EXACT_CONFIDENCE, sig, text, text, key, error_type, message)
    best: tuple[float, PatternCandidate | None] = (0.0, None)
    for candidate in index.candidates(tenant_id, error_type, key):
        score = similarity(toks, candidate.template.split(" "))
        # Ties go to the smaller template: the same choice whichever index (and id scheme) answers.
        if score > best[0] or (
            score == best[0] and best[1] and (candidate.template, candidate.pattern_id)
            < (best[1].template, best[1].pattern_id)
        ):
            best = (score, candidate)
    score, chosen = best
    if chosen is not None and score >= threshold:
        merged = " ".join(merge(toks, chosen.template.split(" ")))
        return MatchDecision("fuzzy", chosen.pattern_id, round(min(score, MAX_FUZZY_CONFIDENCE), 4), sig, text,
                             merged, key, error_type, message)
    return MatchDecision("new", None, 0.0, sig, text, text, key, error_type, message)


class MemoryPatternIndex:
    """An in-memory PatternIndex with the same semantics as the PostgreSQL one."""

    def __init__(self) -> None:
        self._signatures: dict[tuple[str, str], str] = {}
        self._by_key: dict[tuple[str, str, str], list[str]] = {}
        self._templates: dict[str, str] = {}
        self._next = 0

    def by_signature(self, tenant_id: str, signature: str) -> str | None:
        return self._signatures.get((tenant_id, signature))

    def candidates(self, tenant_id: str, error_type: str, candidate_key: str) -> list[PatternCandidate]:
        ids = self._by_key.get((tenant_id, error_type, candidate_key), [])
        return [PatternCandidate(pid, self._templates[pid]) for pid in ids]

    def record(self, tenant_id: str, error_type: str, decision: MatchDecision) -> str:
        """Apply a decision (what record_match does in PostgreSQL); returns the pattern id."""
        pattern_id = decision.pattern_id
        if pattern_id is None:
            self._next += 1
            pattern_id = f"pat_{self._next:016x}"
            self._by_key.setdefault((tenant_id, error_type, decision.candidate_key), []).append(pattern_id)
        if decision.match_type != "exact":  # an exact hit (maybe through an alias) changes nothing
            self._templates[pattern_id] = decision.merged_template
        self._signatures.setdefault((tenant_id, decision.signature), pattern_id)
        return pattern_id
