"""Error message -> template: the message as written, its variable parts replaced by <*>.

Deterministic and process-independent: the same message gives the same template, and the same
sha256 signature, in every worker and every run (no Python hash(); nothing a result depends on
changes between processes).

Every rule is about the shape of a value, never about a system, a product or a word seen in one
log: a value holding a digit (numbers, ids, versions, sizes, durations, hex, dates, IPs), an address
(host:port, MAC, IPv6, a URL, an e-mail, a dotted host name ending in a top-level domain), a path
(Unix or Windows), a hex id, a boolean or null literal, a quoted value, the value of key=value. The
template keeps everything else as written, punctuation included, so it reads like the message.

How: quoted values (which may hold spaces) are masked first; the message is then split on
whitespace and each raw token is judged on its own. A token with structure (brackets, separators,
key=value, key:value) is cut into pieces, each judged, and put back together with its separators.
Then a number and its unit ("30 sec") is one <*>, a written-out timestamp ("Fri Jul 1 07:57:30 2005")
is one <*>, and a run of <*> is one <*> (so a list of any length gives one template).

A verdict is a pure function of the raw token, so it is memoised: the constant words that make up
most of every message cost one dictionary lookup each, done in C by map(). Every step is a single
pass over the message: the cost is linear in its length, however many tokens or variables it holds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

WILDCARD = "<*>"
# Marks, inside a verdict, of a word whose meaning depends on its neighbours: a unit is part of a
# number it follows ("30 sec"); a calendar word is part of a timestamp when next to a number.
_UNIT = "\x00"
_CAL = "\x01"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s\"'<>]*[^\s\"'<>.,;:)\]}]")
_WINDOWS_PATH = re.compile(r"(?<![A-Za-z])[A-Za-z]:\\[^\s,;()\[\]{}|\"']*|\\\\[^\s,;()\[\]{}|\"']+")
# A quoted value. An apostrophe inside a word ("can't") does not open or close one, and a quoted
# string followed by ":" is a key ({"field": ...}), which is kept.
# (One pattern per quote, each led by its quote, so the scan skips to quotes; a fixed replacement.)
_QUOTED = (
    ('"', re.compile(r'"(?<!\w")[^"\n]{1,200}"(?![\w:]|\s+:)'), '"<*>"'),
    ("'", re.compile(r"'(?<!\w')[^'\n]{1,200}'(?![\w:]|\s+:)"), "'<*>'"),
    ("`", re.compile(r"`[^`\n]{1,200}`"), "`<*>`"),
)
# Separators that cut a raw token into pieces (kept in the template).
_CUT = re.compile(r"([,;()\[\]{}|=:]+)")
_HAS_CUT = re.compile(r"[,;()\[\]{}|=:]")
# What the memo's misses are tested against first (what _judge makes of them is <*>): digits joined
# by separators.
_CUT_OR_PATH = re.compile(r"[,;()\[\]{}|=:/\\]")
_AROUND = re.compile(r"([(\[{]*+)((?!\"\"|'')[^\s,;()\[\]{}|=:\\]++)([,;:)\]}]*+)")
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
_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_HEX = frozenset("0123456789abcdefABCDEF")
# Common top-level domains: a dotted lowercase name ending in one is a host name, not a word
# (mapred.task.id, os.path stay words).
_TLDS = frozenset(
    "com net org edu gov mil int io ai dev app co us uk de fr nl eu jp cn hk tw kr in au ca br ru ch se"
    " info biz cloud local localhost internal localdomain lan svc".split()
)
_HOSTNAME = re.compile(r"(?:[a-z0-9-]+\.)+([a-z]{2,12})", re.IGNORECASE)
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
# A token that is a variable and punctuation only: "<*>", "(<*>)", "'<*>',". A run of them is one.
_CORE = r"[\[({\"'`]*<\*>[\])}\"'`,;:.]*"
_RUN = re.compile(rf"(?<!\S)({_CORE})(?: {_CORE})+(?!\S)")
_ADJACENT = re.compile(r"<\*>[\])}\"'`,;:.]* [\[({\"'`]*<\*>")  # a literal first: a fast test for _RUN
_UNIT_AFTER_NUMBER = re.compile(r"<\*>(?: \x00[^\s\])},;:.]+)+")
_CAL_TOKEN = r"[\[({\"'`]*\x01\S+"
_TIMESTAMP = re.compile(rf"(?<!\S)(?:{_CAL_TOKEN}|{_CORE})(?: (?:{_CAL_TOKEN}|{_CORE}))+(?!\S)")


@dataclass(frozen=True, slots=True)
class Options:
    """The normaliser's choices that are decided on data (the benchmark's leave-one-dataset-out)."""

    mask_quoted: bool = True  # a quoted value is one variable ('<*>'), spaces and all
    mask_keyed: bool = False  # the value of key=value is a variable, whatever it looks like


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
            return _UNIT + raw
        if lower in _CALENDAR:
            return f"{head}{_CAL}{core}{tail}"
        if lower in _LITERALS or (len(core) >= 8 and _HEX.issuperset(core)):
            return f"{head}{WILDCARD}{tail}"
        return raw
    if "/" in core:  # a path (/var/x, ./a, a/b/c), not a pair of words (I/O, tokens/min)
        if core[0] in "/~." or core.count("/") > 1:
            return f"{head}{WILDCARD}{tail}"
    elif "\\" in core:  # a Windows path
        return f"{head}{WILDCARD}{tail}"
    if "@" in core[1:]:  # an e-mail or user@host
        return f"{head}{WILDCARD}{tail}"
    if "." in core:
        host = _HOSTNAME.fullmatch(core)
        if host is not None and host.group(1).lower() in _TLDS:
            return f"{head}{WILDCARD}{tail}"
    if len(core) >= 8 and _HEX.issuperset(core):
        return f"{head}{WILDCARD}{tail}"
    return raw


def _masked(raw: str) -> str:
    """_word of a piece holding a digit: <*>, the punctuation around it kept."""
    core = raw.lstrip(_HEAD).rstrip(_TAIL)
    start = len(raw) - len(raw.lstrip(_HEAD))
    return f"{raw[:start]}{WILDCARD}{raw[start + len(core):]}"


class _Verdicts(dict[str, str]):
    """Raw token -> its verdict. Memoising a pure function, so results never depend on it: the
    constant words that recur in nearly every message are judged once. Bounded: ids rarely recur."""

    def __init__(self, judge: Callable[[str], str], mask_keyed: bool) -> None:
        super().__init__()
        self._judge = judge
        self._mask_keyed = mask_keyed

    def __missing__(self, raw: str) -> str:
        if len(self) >= _MAX_VERDICTS:
            self.clear()
        # The commonest misses first, with C-level tests: a word of letters; a token holding a digit
        # and nothing that cuts it up (a number, an id) or made of digits and separators
        # (10.0.0.1:80, 12:30:01); key=value with a value that holds a digit; a piece with
        # separators only around it ("(0x1f)", "2,", "updated:"). Each is what _judge makes of it,
        # without cutting it up.
        digit = not _DIGITS.isdisjoint(raw)
        if raw.isalpha():
            verdict = _word(raw)
        elif digit and _CUT_OR_PATH.search(raw) is None:
            verdict = WILDCARD if raw[0].isalnum() and raw[-1].isalnum() else _masked(raw)
        elif digit and _NUMERIC.fullmatch(raw) is not None:
            verdict = WILDCARD
        elif (around := _AROUND.fullmatch(raw)) is not None and around.group(3).count(":") < 2:
            head, core, tail = around.groups()
            verdict = f"{head}{_masked(core) if digit else _word(core)}{tail}"
        elif digit and (keyed := _KEY_VALUE.fullmatch(raw)) is not None:
            verdict = _key_value(*keyed.groups(), self._mask_keyed)
        else:
            verdict = self._judge(raw)
        self[raw] = verdict
        return verdict


_MAX_VERDICTS = 100_000


class Normaliser:
    """Messages to templates under one set of Options, with its own memo of verdicts."""

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self._verdicts = _Verdicts(self._judge, options.mask_keyed)
        self._verdict = self._verdicts.__getitem__
        self._joined: dict[str, str] = {}

    def clear(self) -> None:
        self._verdicts.clear()
        self._joined.clear()

    def _judge(self, raw: str) -> str:
        """What one whitespace-free raw token becomes (the token as written, variables masked)."""
        if _HAS_CUT.search(raw) is None and "://" not in raw:
            return _word(raw)
        bare = raw.rstrip(",;:.")
        if bare in _EMPTY:  # an empty value: "connection from <*> () at" is "from <*> (<*>) at"
            return f"{bare[0]}{WILDCARD}{bare[1]}{raw[len(bare):]}"
        text = raw
        if "://" in text:
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
        mask_keyed = self.options.mask_keyed
        for i in range(0, len(parts), 2):
            if parts[i]:
                keyed = mask_keyed and i > 0 and parts[i - 1][-1] == "=" and parts[i - 1] != "=="
                parts[i] = _word(parts[i], keyed)
        text = "".join(parts)
        if WILDCARD in text:
            text = _JOINED.sub(WILDCARD, text)
        return text

    def template(self, message: str) -> str:
        """The message's template: its tokens, variables masked, joined by single spaces."""
        # No digit ever reaches a template (a token holding one is, or holds, a variable), and no
        # rule depends on which digit it is: with every digit written 0, ids and numbers that differ
        # only in their digits are one token to the memo, judged once (the template is the same).
        if message.isascii():
            message = message.encode("ascii").translate(_ZEROS).decode("ascii")
        else:
            message = message.encode().translate(_ZEROS).decode()
        if self.options.mask_quoted:
            for quote, pattern, masked in _QUOTED:
                if quote in message:
                    message = pattern.sub(masked, message)
        text = " ".join(map(self._verdict, message.split()))
        return self._joined.get(text) or self._join(text)

    def _join(self, text: str) -> str:
        """The template from its tokens' verdicts: a number and its unit, a written-out timestamp and
        a run of variables each become one <*>. Memoised (a pure function): templates recur."""
        final = text
        if _UNIT in final:
            final = _UNIT_AFTER_NUMBER.sub(WILDCARD, final).replace(_UNIT, "")
        if _CAL in final:  # runs of variables and calendar words, in one pass
            final = _TIMESTAMP.sub(_timestamp, final).replace(_CAL, "")
        elif _ADJACENT.search(final) is not None:
            final = _RUN.sub(_run, final)
        if len(self._joined) >= _MAX_VERDICTS:
            self._joined.clear()
        self._joined[text] = final
        return final


def _key_value(key: str, sep: str, value: str, mask_keyed: bool) -> str:
    """What _judge makes of key=value or key:value (a value without separators), without cutting."""
    core = value.rstrip(_OUTER)
    if sep == ":" and core.isdigit() and len(core) <= 5 and key[0].isalnum():  # host:port
        return WILDCARD + value[len(core):]
    text = _word(key) + sep + _word(value, sep == "=" and mask_keyed)
    return _JOINED.sub(WILDCARD, text) if WILDCARD in text else text


def _run(match: re.Match[str]) -> str:
    """A run of variable tokens is one <*>."""
    text = match.group(0)
    return _one(text[: text.index(" ")], text[text.rindex(" ") + 1:])


def _timestamp(match: re.Match[str]) -> str:
    """A run of variables and calendar words is one <*> (a written-out timestamp, or a plain run);
    calendar words with no variable among them stay words ("May not be empty on Monday")."""
    text = match.group(0)
    if WILDCARD not in text:
        return text
    return _one(text[: text.index(" ")].replace(_CAL, "<*>", 1), text[text.rindex(" ") + 1:].replace(_CAL, "<*>", 1))


_CLOSES = {")": "(", "]": "[", "}": "{", '"': '"', "'": "'", "`": "`"}


def _one(first: str, last: str) -> str:
    """One <*> for a run of tokens from `first` to `last`: a bracket opened in the first and closed in
    the last is kept (a bracketed list stays bracketed), one opened and closed inside the run is not
    (an optional "(1.16 KB)" after a number leaves no trace); the last token's separator is kept."""
    start, end = first.index(WILDCARD), last.rindex(WILDCARD) + 3
    tail = last[end:]
    if not start:  # nothing opened before the run: only the last token's closing separator stays
        return WILDCARD + tail[len(tail.rstrip(",;:.")):]
    opened = list(first[:start])
    for c in first[first.rindex(WILDCARD) + 3:]:  # closed again inside the first token
        if opened and _CLOSES.get(c) == opened[-1]:
            opened.pop()
    closers = tail.rstrip(",;:.")
    own = [c for c in last[: last.index(WILDCARD)] if c in "([{\"'`"]
    head, kept = "", ""
    for c in closers:
        if own and _CLOSES.get(c) == own[-1]:  # closes a bracket the last token opened
            own.pop()
        elif opened and _CLOSES.get(c) == opened[-1]:
            head, kept = opened.pop() + head, kept + c
    return f"{head}{WILDCARD}{kept}{tail[len(closers):]}"


_INSTANCES: dict[Options, Normaliser] = {}


def normaliser(options: Options = Options()) -> Normaliser:
    """The normaliser of these options (one per process, with its memo)."""
    found = _INSTANCES.get(options)
    if found is None:
        found = _INSTANCES[options] = Normaliser(options)
    return found


DEFAULT = normaliser()


def clear_memo() -> None:
    """Forget the memoised verdicts (benchmarks start cold; results never depend on the memo)."""
    for instance in _INSTANCES.values():
        instance.clear()


def template(message: str) -> str:
    """The message's template under the shipped options."""
    return DEFAULT.template(message)


def normalise(message: str) -> tuple[str, ...]:
    """The message as template tokens: variable parts replaced by <*>, a run of them collapsed."""
    text = DEFAULT.template(message)
    return tuple(text.split(" ")) if text else ()


def tokens(message: str) -> list[str]:
    """The message's template tokens (see normalise)."""
    return list(normalise(message))


def signature(error_type: str, template_text: str) -> str:
    """sha256 hex of the error type and the template: stable across processes (never Python's hash())."""
    return hashlib.sha256(f"{error_type}\x1f{template_text}".encode()).hexdigest()
