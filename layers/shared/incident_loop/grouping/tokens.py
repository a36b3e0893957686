"""What one raw token (a whitespace-free piece of a message) becomes in a template.

A verdict is the token as written with its variable parts replaced by <*>; a pure function of the
token, memoised by Verdicts. Every rule is about the shape of a value, never about a system, a
product or a word seen in one log: a value holding a digit (numbers, ids, versions, sizes,
durations, hex, dates, IPs), an address (host:port, MAC, IPv6, a URL but its scheme, an e-mail, a dotted host name
ending in a top-level domain, or in a country code under a generic second level), a path (Unix or
Windows, or a dotted name with a slash), a hex id, a boolean or null literal, the value of key=value
(when the options say so). A unit or a calendar word is marked, for the message level to join it
with a number next to it.
"""

from __future__ import annotations

import re

from incident_loop.grouping.memo import remember

WILDCARD = "<*>"
# Marks, inside a verdict, of a word whose meaning depends on its neighbours: a unit is part of a
# number it follows ("30 sec"); a calendar word is part of a timestamp when next to a number.
UNIT = "\x00"
CAL = "\x01"

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://[^\s\"'<>]*[^\s\"'<>.,;:)\]}]")
_AROUND_URL = "\"'`([{)]},;:.!?"  # what may stand around a URL that is a token of its own
_WINDOWS_PATH = re.compile(r"(?<![A-Za-z])[A-Za-z]:\\[^\s,;()\[\]{}|\"']*|\\\\[^\s,;()\[\]{}|\"']+")
# Separators that cut a raw token into pieces (kept in the template).
_CUT = re.compile(r"([,;()\[\]{}|=:]+)")
_HAS_CUT = re.compile(r"[,;()\[\]{}|=:]")
# The shapes the memo's misses are tested against first (Verdicts.__missing__): what judge() makes
# of each, without cutting it up.
_AROUND = re.compile(r"([(\[{]*+)((?!\"\"|'')[^\s,;()\[\]{}|=:\\]++)([,;:)\]}]*+)")
# A token holding a digit in one piece with only brackets, quotes and punctuation around it
# ("dd0f0b00", "[worker-00]", "'c000-a0b0'},", "00/00/0000"): what _AROUND and _masked make of it, in
# one match. Groups: brackets, quotes, the value (not ending in punctuation), punctuation, separators
# and the punctuation after them ('"0a0b"}.').
_PLAIN = r"[^\s,;()\[\]{}|=:\\.!?\"'`]"  # a value's character that is not punctuation around it
_AROUND_VALUE = re.compile(
    rf"([(\[{{]*+)(?!\"\"|'')([\"'`]*+)((?:{_PLAIN}++|[.!?\"'`]++(?={_PLAIN}))++)"
    r"([.!?\"'`]*+)((?:[,;:)\]}][,;:)\]}.!?\"'`]*+)?)")
_KEY_VALUE = re.compile(r"([A-Za-z_][\w.-]*)([=:])([^\s,;()\[\]{}|=:/\\\"'`]+)")
_NUMERIC = re.compile(r"/?[-+]?\d(?:[-+\d.:]*\d)?")
# Variables joined by punctuation inside one token are one variable (10.0.0.1:80, 12:30:01, a/b).
_JOINED = re.compile(r"<\*>(?:[.:,;/\\\-_@#+~]*<\*>)+")
# Whole-token addresses: host:port (a bare service name too: redis:6379), MAC / IPv6 / clock times.
_HOST_PORT = re.compile(r"/?[A-Za-z0-9][\w.-]*:\d{1,5}")
_BRACKETED_IPV6 = re.compile(r"\[(?=[^\]]*\d)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,}(?:%\w+)?\](?::\d{1,5})?")
_COLON_HEX = re.compile(r"(?=[^ ]*\d)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,}(?:%\w+)?")
# Punctuation around a word that is not part of it (a leading "." or "~" is: ./a, ~/b).
_HEAD = "\"'`"
_TAIL = ".,!?\"'`"
_OUTER = _HEAD + _TAIL
_EMPTY = frozenset(("()", "[]", "{}", "''", '""'))

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
# Common top-level domains: a dotted name ending in one is a host name, not a word (mapred.task.id,
# os.path, Net.Dispatcher stay words).
_TLDS = frozenset(
    "com net org edu gov mil int io ai dev app co us uk de fr nl eu jp cn hk tw kr in au ca br ru ch se"
    " info biz cloud local localhost internal localdomain lan svc".split()
)
# Under a two-letter country code, a host name's second level is one of these generic words
# (host.edu.pl, www.example.co.uk, a.b.com.br): with a label before them, a host name whatever the
# country. Not any two-letter ending: dotted words end in them too (mapred.task.id, libc.so).
_SECOND_LEVEL = frozenset("com net org edu gov mil ac co".split())
_HOSTNAME = re.compile(r"(?:[a-z0-9-]+\.)*?(?:[a-z0-9-]+\.([a-z]+)\.)?([a-z]{2,12})", re.IGNORECASE)
_LITERALS = frozenset("true false null nil".split())  # compared lower-case
# Compared lower-case: systems differ in casing ("JUN", "Kb").
_CALENDAR = frozenset(
    "mon tue wed thu fri sat sun monday tuesday wednesday thursday friday saturday sunday jan feb mar apr may"
    " jun jul aug sep sept oct nov dec january february march april june july august september october"
    " november december am pm utc gmt est edt cst cdt mst mdt pst pdt cet cest eet eest wet west bst ist jst"
    " kst hkt sgt aest aedt".split()
)
_UNITS = frozenset(
    "ms us µs ns s sec secs second seconds min mins minute minutes h hr hrs hour hours day days"
    " b kb mb gb tb pb kib mib gib tib bytes byte % bps kbps mbps gbps".split()
)


def _word(raw: str, keyed_value: bool = False) -> str:
    """The template token for one piece of a token: the piece as written, or its variable masked."""
    core = raw.lstrip(_HEAD).rstrip(_TAIL)
    if not core:
        return raw
    if len(core) != len(raw):
        start = raw.find(core)
        head, tail = raw[:start], raw[start + len(core):]
    else:
        head = tail = ""
    if keyed_value or WILDCARD in core or not _DIGITS.isdisjoint(core):
        return f"{head}{WILDCARD}{tail}"
    if core.isalpha():
        lower = core.lower()
        if lower in _UNITS and not head:
            return UNIT + raw
        if lower in _CALENDAR:
            return f"{head}{CAL}{core}{tail}"
        if lower in _LITERALS or (len(core) >= 8 and _HEX.issuperset(core)):
            return f"{head}{WILDCARD}{tail}"
        return raw
    if "/" in core:  # a path (/var/x, ./a, a/b/c, host.example/x, app.pkg/.Main), not a pair of words (I/O, tokens/min)
        if core[0] in "/~." or core.count("/") > 1 or "." in core:
            return f"{head}{WILDCARD}{tail}"
    elif "\\" in core:  # a Windows path
        return f"{head}{WILDCARD}{tail}"
    if "@" in core[1:]:  # an e-mail or user@host
        return f"{head}{WILDCARD}{tail}"
    if "." in core:
        host = _HOSTNAME.fullmatch(core)
        if host is not None and (
            (top := host.group(2).lower()) in _TLDS
            or (len(top) == 2 and host.group(1) is not None and host.group(1).lower() in _SECOND_LEVEL)
        ):
            return f"{head}{WILDCARD}{tail}"
    if len(core) >= 8 and _HEX.issuperset(core):
        return f"{head}{WILDCARD}{tail}"
    return raw


def _masked(raw: str) -> str:
    """_word of a piece holding a digit: <*>, the punctuation around it kept."""
    core = raw.lstrip(_HEAD).rstrip(_TAIL)
    start = len(raw) - len(raw.lstrip(_HEAD))
    return f"{raw[:start]}{WILDCARD}{raw[start + len(core):]}"


def _key_value(key: str, sep: str, value: str, mask_keyed: bool) -> str:
    """What judge() makes of key=value or key:value (a value without separators), without cutting."""
    core = value.rstrip(_OUTER)
    if sep == ":" and core.isdigit() and len(core) <= 5 and key[0].isalnum():  # host:port
        return WILDCARD + value[len(core):]
    text = _word(key) + sep + _word(value, sep == "=" and mask_keyed)
    return _JOINED.sub(WILDCARD, text) if WILDCARD in text else text


def judge(raw: str, mask_keyed: bool) -> str:
    """What one whitespace-free raw token becomes: the token as written, its variables masked (cut
    into pieces at its separators, each piece judged by _word, put back together)."""
    if _HAS_CUT.search(raw) is None and "://" not in raw:
        return _word(raw)
    bare = raw.rstrip(",;:.")
    if bare in _EMPTY:  # an empty value: "connection from <*> () at" is "from <*> (<*>) at"
        return f"{bare[0]}{WILDCARD}{bare[1]}{raw[len(bare):]}"
    text = raw
    if "://" in text:
        url = _URL.search(text)
        if url is not None and not text[: url.start()].strip(_AROUND_URL) and not text[url.end():].strip(_AROUND_URL):
            # A URL with only brackets, quotes and punctuation around it keeps its scheme ("hdfs://<*>"): the
            # scheme is the log statement's, and says what the address is.
            return f"{text[: url.start()]}{url.group(1)}://{WILDCARD}{text[url.end():]}"
        text = _URL.sub(WILDCARD, text)
    if "\\" in text:
        text = _WINDOWS_PATH.sub(WILDCARD, text)
    if "[" in text and "]" in text and ":" in text:
        text = _BRACKETED_IPV6.sub(WILDCARD, text)
    core = text.strip(_OUTER + "()[]{},;")
    if core and (_HOST_PORT.fullmatch(core) or _COLON_HEX.fullmatch(core)):
        start = text.find(core)  # only brackets and punctuation around it
        return f"{text[:start]}{WILDCARD}{text[start + len(core):]}"
    parts = _CUT.split(text)
    for i in range(0, len(parts), 2):
        if parts[i]:
            keyed = mask_keyed and i > 0 and parts[i - 1][-1] == "=" and parts[i - 1] != "=="
            parts[i] = _word(parts[i], keyed)
    text = "".join(parts)
    if WILDCARD in text:
        text = _JOINED.sub(WILDCARD, text)
    return text


MAX_VERDICTS = 50_000
MAX_TOKEN_LENGTH = 256  # a longer token (a blob, a long URL) is judged each time, never memoised


class Verdicts(dict[str, str]):
    """Raw token -> its verdict. Memoising a pure function, so results never depend on it: the
    constant words that recur in nearly every message are judged once. Bounded: ids rarely recur."""

    def __init__(self, mask_keyed: bool) -> None:
        super().__init__()
        self._mask_keyed = mask_keyed

    def __missing__(self, raw: str) -> str:
        # The commonest misses first, with C-level tests: a word of letters; a token holding a digit in
        # one piece with only brackets, quotes and punctuation around it (a number, an id, "[0x1f],"), or
        # made of digits and separators (10.0.0.1:80, 12:30:01, [fe80::1]); a piece with separators only
        # around it ("(ciostream", "updated:"); key=value or key:value whose value has no separator
        # (user=root, rhost=host.example.com, pid=42). Each is what judge() makes of it, without cutting
        # it up.
        digit = not _DIGITS.isdisjoint(raw)
        if raw.isalpha():
            verdict = _word(raw)
        elif digit and (value := _AROUND_VALUE.fullmatch(raw)) is not None and value.group(5).count(":") < 2:
            brackets, quotes, _, punctuation, separators = value.groups()
            verdict = f"{brackets}{quotes}{WILDCARD}{punctuation}{separators}"
        elif digit and (_NUMERIC.fullmatch(raw) is not None
                        or (raw[0] == "[" and _BRACKETED_IPV6.fullmatch(raw) is not None)):
            verdict = WILDCARD
        elif (around := _AROUND.fullmatch(raw)) is not None and around.group(3).count(":") < 2:
            head, core, tail = around.groups()
            verdict = f"{head}{_masked(core) if digit else _word(core)}{tail}"
        elif (keyed := _KEY_VALUE.fullmatch(raw)) is not None:
            verdict = _key_value(*keyed.groups(), self._mask_keyed)
        else:
            verdict = judge(raw, self._mask_keyed)
        return remember(self, raw, verdict, MAX_VERDICTS) if len(raw) <= MAX_TOKEN_LENGTH else verdict
