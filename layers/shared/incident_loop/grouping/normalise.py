"""Error message -> template: the variable parts (ids, numbers, paths, urls, ...) masked as <*>.

Deterministic and process-independent: the template and its sha256 signature are the same in
every worker, every run. One combined regular expression does the masking in a single pass.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

WILDCARD = "<*>"

# Alternatives are tried left to right at each position: whole structures (urls, paths, uuids,
# timestamps) win over the numbers inside them.
_VARIABLE = re.compile(
    "|".join(
        [
            r"(?P<drop>\((?:[^()]*\d[^()]*)?\))",  # parenthetical numeric detail: "(1.16 KB)", "()"
            r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+",  # urls
            r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",  # emails
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",  # uuids
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",  # iso timestamps
            r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b",  # times and durations (07:57:30, 00:01)
            # quantities: a number with its unit is one value ("30s", "30 sec", "<1 sec", "1.5 KB")
            r"[<>~]?\b\d+(?:\.\d+)?\s?(?:ms|us|ns|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?"
            r"|[KMGT]i?B|B|bytes?|%)(?![\w])",
            r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])",  # ipv4[:port]
            r"(?<![\w./])(?:[a-z0-9-]+\.)+[a-z]{2,24}(?::\d+)?(?![\w./])",  # hostnames[:port]
            r"(?:(?<=[\s=])|^)(?:[A-Za-z]:)?(?:[\\/][\w.@%+-]+)+[\\/]?",  # paths
            r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`",  # quoted values
            r"\b0x[0-9a-fA-F]+\b",  # hex literals
        ]
    )
)
_SPLIT = re.compile(r"[\s,;()\[\]{}|]+|(?<=[=:])|(?==)")
_HEX_ID = re.compile(r"^[0-9a-fA-F]{6,}$")
# Calendar words are parts of timestamps written out ("Fri Jul  1 07:57:30 2005").
_CALENDAR = frozenset(
    "Mon Tue Wed Thu Fri Sat Sun Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
)
_STRIP = ".!?\"'"


def _mask(match: re.Match[str]) -> str:
    return " " if match.group("drop") is not None else f" {WILDCARD} "


def _variable(token: str) -> bool:
    """A token that carries a digit (ids, counts, versions) or is a long hex id or a calendar word."""
    return (
        any(c.isdigit() for c in token)
        or token in _CALENDAR
        or (len(token) >= 6 and _HEX_ID.match(token) is not None)
    )


@lru_cache(maxsize=65536)
def _tokens(message: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in _SPLIT.split(_VARIABLE.sub(_mask, message.strip())):
        token = raw.strip(_STRIP)
        if not token:
            continue
        if token != WILDCARD and _variable(token):
            token = WILDCARD
        if token == WILDCARD and out and out[-1] == WILDCARD:
            continue  # runs of variable parts are one variable part
        out.append(token)
    return tuple(out)


def tokens(message: str) -> list[str]:
    """The message as template tokens: variable parts replaced by <*>, runs of <*> collapsed."""
    return list(_tokens(message))


def template(message: str) -> str:
    return " ".join(_tokens(message))


def signature(error_type: str, template_text: str) -> str:
    """sha256 of the error type and the template: stable across processes (never Python's hash())."""
    return hashlib.sha256(f"{error_type}\x1f{template_text}".encode()).hexdigest()
