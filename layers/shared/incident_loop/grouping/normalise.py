"""Error message -> template: the variable parts (ids, numbers, paths, urls, ...) masked as <*>.

Deterministic and process-independent: the same message gives the same template, and the same
sha256 signature, in every worker and every run (no Python hash(); nothing a result depends on
changes between processes).

How: quoted values (which may hold spaces) are masked first; then the message is split on
whitespace and each raw token is judged on its own. A token holding a digit is variable (numbers,
ids, versions, IPs, sizes, durations like 30s or 1500ms, block ids like blk_-123, hex, dates); a
token with structure is cut into pieces first (brackets, key=value -> "key=" <*>, key:value,
host:port, MAC/IPv6/clock times, urls); paths, emails, hostnames and long hex ids are variable too.
Then a run of <*> (or a number and its unit: "30 sec") is one <*>, and calendar words next to a
masked number are part of a timestamp.

A verdict is a pure function of the raw token, so it is memoised: the constant words that make
up most of every message cost one dictionary lookup each, done in C by map().
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

WILDCARD = "<*>"
_W = f" {WILDCARD} "  # a masked structure stays a token of its own
_RUN = f"{WILDCARD} {WILDCARD}"
# Mark, inside a verdict, a word whose meaning depends on its neighbours: a unit is part of a
# number it follows ("30 sec"), a calendar word is part of a timestamp when next to a number.
_UNIT = "\x00"
_CAL = "\x01"
_UNIT_AFTER_NUMBER = re.compile(r"<\*>(?: \x00\S+)+")
# A run of calendar words and masked numbers is one written-out timestamp ("Fri Jul 1 07:57:30
# 2005"); a calendar word with no number next to it ("May not be empty") stays a word.
_TIMESTAMP = re.compile(r"(?:\x01\S+ )*<\*>(?: (?:\x01\S+|<\*>))*")

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")
# A quoted value. An apostrophe inside a word ("can't") does not open or close one, and a quoted
# string followed by ":" is a key ({"field": ...}), which is kept.
_QUOTED = re.compile(
    r"""(?<!\w)'[^'\n]{0,200}'(?![\w:]|\s+:)|(?<!\w)"[^"\n]{0,200}"(?![\w:]|\s+:)|`[^`\n]{0,200}`"""
)
# Characters that make a raw token more than one piece.
_SPECIAL = re.compile(r"[,;()\[\]{}|:=]")
_SEPARATOR_SPLIT = re.compile(r"[\s,;()\[\]{}|]+")
# A whole token that is variable, brackets and trailing punctuation aside: one holding a digit and
# nothing that cuts it into pieces (a number, an id, blk_-123, 1500ms, "(0x1f)."), or an address:
# host:port (/host:port, a bare service name: redis:6379), a MAC address, IPv6, a clock time, or a
# Windows path.
_VARIABLE = re.compile(  # possessive quantifiers (*+): a token that is not variable fails fast
    r"[(\[{]*+(?:[^,;()\[\]{}|:=\d]*+\d[^,;()\[\]{}|:=]*+"
    r"|/?(?:[A-Za-z0-9][\w.-]*+:\d{1,5}+|[0-9A-Fa-f]{1,4}+(?::[0-9A-Fa-f]{0,4}+){2,}+)|[A-Za-z]:\\[^,;()\[\]{}|]*+"
    r")[)\]},;:.]*+"
)
# key=value (any value) and key:value (a value holding a digit), the value without separators.
_KEYED = re.compile(
    r"([A-Za-z_][\w.-]*+=)[^\s=,;()\[\]{}|]++"
    r"|([A-Za-z_][\w.-]*+:)[^\s:=,;()\[\]{}|\d]*+\d[^\s:=,;()\[\]{}|]*+"
)

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_STRIP = ".,!?\"'`"
# Common top-level domains: a dotted lowercase name ending in one is a hostname, not a word
# (mapred.task.id, os.path stay words).
_TLDS = frozenset(
    "com net org edu gov mil int io ai dev app co us uk de fr nl eu jp cn hk tw kr in au ca br ru ch se"
    " info biz cloud local localhost internal localdomain lan svc".split()
)
_HOSTNAME = re.compile(r"(?:[a-z0-9-]+\.)+([a-z]{2,12})")
_CALENDAR = frozenset("Mon Tue Wed Thu Fri Sat Sun Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
_UNITS = frozenset(
    "ms us ns s sec secs second seconds min mins minute minutes h hr hrs hour hours day days"
    " B KB MB GB TB KiB MiB GiB byte bytes %".split()
)


def _alpha(token: str) -> str:
    """The template token for a word of letters only (most constant words)."""
    if token in _UNITS:
        return _UNIT + token
    if token in _CALENDAR:
        return _CAL + token
    if len(token) >= 8 and _HEX.issuperset(token):  # a hex id without a digit in it
        return WILDCARD
    return token


@lru_cache(maxsize=65_536)  # pieces ("key=", "onExtend:", "KB") recur inside otherwise new tokens
def _word(raw: str) -> str:
    """The template token for one piece of a token ("" when it is only punctuation)."""
    if raw.isalpha():
        return _alpha(raw)
    token = raw.strip(_STRIP)
    if token[-1:] == ":":  # '"field":' is the key field:
        token = token[:-1].strip(_STRIP) + ":"
    if not token:
        return ""
    if WILDCARD in token or not _DIGITS.isdisjoint(token):
        return WILDCARD
    if "/" in token:  # a path (/var/x, ./a, a/b/c), not a pair of words (I/O, tokens/min)
        if token[0] in "/~." or token.count("/") > 1:
            return WILDCARD
    elif "\\" in token:  # a Windows path
        return WILDCARD
    if "@" in token[1:]:  # an email or user@host
        return WILDCARD
    if "." in token:
        host = _HOSTNAME.fullmatch(token.rstrip(":"))
        if host is not None and host.group(1) in _TLDS:
            return WILDCARD
    if len(token) >= 8 and _HEX.issuperset(token):  # a hex id without a digit in it
        return WILDCARD
    if token in _UNITS:
        return _UNIT + token
    if token in _CALENDAR:
        return _CAL + token
    return token


def _pieces(raw: str) -> list[str]:
    """A raw token with structure, cut into its pieces: brackets and list separators split it,
    an address is one <*>, "key=value" is "key=" <*>, "key:value" is "key:" and the value."""
    if "://" in raw:
        raw = _URL.sub(_W, raw)
    out: list[str] = []
    for piece in _SEPARATOR_SPLIT.split(raw):
        head, eq, value = piece.partition("=")
        masked_value = bool(eq and value and value[0] != "=")
        if masked_value:
            piece = head + "="
        if ":" in piece:
            if _VARIABLE.fullmatch(piece):
                out.append(WILDCARD)
            else:
                out += piece.replace(":", ": ").split()
        elif piece:
            out.append(piece)
        if masked_value:
            out.append(WILDCARD)
    return out


def _judge(raw: str) -> str:
    """What one whitespace-free raw token becomes: its template tokens joined by spaces, or ""."""
    if _VARIABLE.fullmatch(raw):
        return WILDCARD
    if _SPECIAL.search(raw) is None:  # most tokens are one piece
        return _word(raw)
    keyed = None if "://" in raw else _KEYED.fullmatch(raw)
    if keyed is not None:
        key = _word(keyed.group(1) or keyed.group(2))
        return WILDCARD if key == WILDCARD else f"{key} {WILDCARD}"
    out: list[str] = []
    for piece in _pieces(raw):
        token = piece if piece is WILDCARD else _word(piece)
        if token and not (token == WILDCARD and out and out[-1] == WILDCARD):
            out.append(token)
    return " ".join(out)


class _Verdicts(dict[str, str]):
    """Raw token -> its verdict. Memoising a pure function, so results never depend on it: the
    constant words that recur in nearly every message are judged once. Bounded: ids rarely recur."""

    def __missing__(self, raw: str) -> str:
        if len(self) >= _MAX_VERDICTS:
            self.clear()
        # The commonest misses first, with C-level tests: a word of letters, a number, an id.
        if raw.isalpha():
            verdict = self[raw] = _alpha(raw)
        elif raw.isdigit() or (not _DIGITS.isdisjoint(raw) and _SPECIAL.search(raw) is None):
            verdict = self[raw] = WILDCARD
        else:
            verdict = self[raw] = _judge(raw)
        return verdict


_MAX_VERDICTS = 100_000
_VERDICTS = _Verdicts()
_verdict = _VERDICTS.__getitem__


def clear_memo() -> None:
    """Forget the memoised verdicts (benchmarks start cold; results never depend on the memo)."""
    _VERDICTS.clear()
    _word.cache_clear()


def template(message: str) -> str:
    """The message's template: its template tokens joined by single spaces."""
    if "'" in message or '"' in message or "`" in message:
        message = _QUOTED.sub(_W, message)
    text = " ".join(map(_verdict, message.split()))
    if "  " in text or text[:1] == " " or text[-1:] == " ":  # tokens that were only punctuation
        text = " ".join(text.split())
    if _UNIT in text:
        text = _UNIT_AFTER_NUMBER.sub(WILDCARD, text).replace(_UNIT, "")
    if _CAL in text:
        text = _TIMESTAMP.sub(WILDCARD, text).replace(_CAL, "")
    while _RUN in text:
        text = text.replace(_RUN, WILDCARD)
    return text


def normalise(message: str) -> tuple[str, ...]:
    """The message as template tokens: variable parts replaced by <*>, a run of them (or a number
    and its unit) collapsed into one."""
    text = template(message)
    return tuple(text.split(" ")) if text else ()


def tokens(message: str) -> list[str]:
    """The message's template tokens (see normalise)."""
    return list(normalise(message))


def signature(error_type: str, template_text: str) -> str:
    """sha256 hex of the error type and the template: stable across processes (never Python's hash())."""
    return hashlib.sha256(f"{error_type}\x1f{template_text}".encode()).hexdigest()
