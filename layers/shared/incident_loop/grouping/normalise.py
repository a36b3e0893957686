"""Error message -> template: the variable parts (ids, numbers, paths, urls, ...) masked as <*>.

Deterministic and process-independent: the template and its sha256 signature are the same in
every worker, every run. Most of the work is per token (cheap character tests); the few
structures that span tokens (urls, quoted values, numeric parentheticals) are cut out first, and
only when the message contains the character that can start one.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

WILDCARD = "<*>"

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I)
_QUOTED = re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`")
# Parenthesised detail is dropped: numeric ("(1.16 KB)"), empty ("()"), or a call's arguments
# written against a word ("chdir(/p/x)", "chdir(pwd)", "error(s)").
_PAREN_DETAIL = re.compile(r"\((?:[^()]*\d[^()]*)?\)|(?<=\w)\([^()\s]*\)")
# Token boundaries: whitespace and brackets; "=" stands alone and ":" ends a token ("key=value", "host:").
_BRACKETS = str.maketrans(",;()[]{}|", "         ")
_HOSTNAME = re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,24}:?")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
# Calendar words are parts of timestamps written out ("Fri Jul  1 07:57:30 2005").
_CALENDAR = frozenset("Mon Tue Wed Thu Fri Sat Sun Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
# A unit right after a number belongs to the quantity: "30 sec", "<1 sec", "1190 bytes" are one value.
_UNITS = frozenset(
    "ms us ns s sec secs second seconds min mins minute minutes h hr hrs hour hours day days"
    " B KB MB GB TB KiB MiB GiB byte bytes %".split()
)
_STRIP = ".!?\"'"


def _variable(token: str) -> bool:
    """Ids, counts, versions, addresses, paths, hostnames, long hex ids, calendar words."""
    if not _DIGITS.isdisjoint(token) or token in _CALENDAR:
        return True
    if "/" in token or "\\" in token or "@" in token:
        return True
    if "." in token and _HOSTNAME.fullmatch(token):
        return True
    return len(token) >= 6 and _HEX.issuperset(token) and token.lower() != token.upper()


# raw token -> its template token ("" when it is only punctuation). Constant words recur in almost
# every message: deciding once per distinct raw token is enough. Bounded: ids never come back.
_VERDICTS: dict[str, str] = {}


def _template_token(raw: str) -> str:
    token = raw.strip(_STRIP)
    if token and token != WILDCARD and _variable(token):
        return WILDCARD
    return token


@lru_cache(maxsize=65536)
def _tokens(message: str) -> tuple[str, ...]:
    text = message.strip()
    if "://" in text:
        text = _URL.sub(f" {WILDCARD} ", text)
    if "'" in text or '"' in text or "`" in text:
        text = _QUOTED.sub(f" {WILDCARD} ", text)
    if "(" in text:
        text = _PAREN_DETAIL.sub(" ", text)
    text = text.translate(_BRACKETS)
    if "=" in text:
        text = text.replace("=", " = ")
    if ":" in text:
        text = text.replace(":", ": ")
    verdicts = _VERDICTS
    if len(verdicts) > 200_000:
        verdicts.clear()
    out: list[str] = []
    last = ""
    for raw in text.split():
        token = verdicts.get(raw)
        if token is None:
            token = verdicts[raw] = _template_token(raw)
        if not token:
            continue
        if last == WILDCARD and (token == WILDCARD or token in _UNITS):
            continue  # a run of variable parts, or a number's unit, is one variable part
        out.append(token)
        last = token
    return tuple(out)


def tokens(message: str) -> list[str]:
    """The message as template tokens: variable parts replaced by <*>, runs of <*> collapsed."""
    return list(_tokens(message))


def template(message: str) -> str:
    return " ".join(_tokens(message))


def signature(error_type: str, template_text: str) -> str:
    """sha256 of the error type and the template: stable across processes (never Python's hash())."""
    return hashlib.sha256(f"{error_type}\x1f{template_text}".encode()).hexdigest()
