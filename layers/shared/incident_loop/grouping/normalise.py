"""Error message -> template: the variable parts (ids, numbers, paths, urls, ...) masked as <*>.

Deterministic and process-independent: the template and its sha256 signature are the same in
every worker, every run.
"""

from __future__ import annotations

import hashlib
import re

WILDCARD = "<*>"

# Order matters: whole structures (urls, paths, uuids) go before the numbers inside them.
_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), WILDCARD),  # urls
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), WILDCARD),  # emails
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), WILDCARD),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), WILDCARD),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), WILDCARD),  # times of day
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])"), WILDCARD),  # ipv4[:port]
    (re.compile(r"(?:(?<=\s)|^)(?:[A-Za-z]:)?(?:[\\/][\w.@%+-]+){2,}[\\/]?"), WILDCARD),  # paths
    (re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`"), WILDCARD),  # quoted values
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), WILDCARD),
    (re.compile(r"\b[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b", re.I), None),
]
_HEXLIKE = _MASKS[-1][0]
_SPLIT = re.compile(r"[\s,;()\[\]{}|]+|(?<=[=:])|(?==)")
_HAS_DIGIT = re.compile(r"\d")


def _mask_hex(match: re.Match[str]) -> str:
    token = match.group(0)
    # Hex-looking runs of 6+ characters are ids (commit shas, request ids); short words stay.
    return WILDCARD if len(token) >= 6 else token


def tokens(message: str) -> list[str]:
    """The message as template tokens: variable parts replaced by <*>, runs of <*> collapsed."""
    text = message.strip()
    for pattern, replacement in _MASKS[:-1]:
        text = pattern.sub(replacement or WILDCARD, text)
    text = _HEXLIKE.sub(_mask_hex, text)
    out: list[str] = []
    for raw in _SPLIT.split(text):
        token = raw.strip(".!?\"'")
        if not token:
            continue
        if token != WILDCARD and _HAS_DIGIT.search(token):
            # Anything carrying a digit is an id, a count, a duration or a version: variable.
            token = WILDCARD
        if out and out[-1] == WILDCARD and token == WILDCARD:
            continue
        out.append(token)
    return out


def template(message: str) -> str:
    return " ".join(tokens(message))


def signature(error_type: str, template_text: str) -> str:
    """sha256 of the error type and the template: stable across processes (never Python's hash())."""
    return hashlib.sha256(f"{error_type}\x1f{template_text}".encode()).hexdigest()
