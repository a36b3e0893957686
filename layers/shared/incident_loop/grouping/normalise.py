"""Error message -> template: the message as written, its variable parts replaced by <*>.

Deterministic and process-independent: the same message gives the same template, and the same
sha256 signature, in every worker and every run (no Python hash(); nothing a result depends on
changes between processes). The template keeps everything that is not a variable as written,
punctuation included, so it reads like the message.

How: quoted values (which may hold spaces) are masked first; the message is then split on
whitespace and each raw token judged on its own (tokens.py: every rule is about the shape of a
value, never about a system or a word seen in one log). Then a number and its unit ("30 sec") is one
<*>, a written-out timestamp ("Fri Jul 1 07:57:30 2005") is one <*>, and a run of <*> is one <*> (a
list of any length gives one template; an optional bracketed value after a variable leaves none).

Memoised pure functions: a message's template (its digits written 0: the lines of one log statement
that differ only in their numbers are one lookup), a raw token's verdict, the template of a
message's verdicts, and the one <*> of a run of variables; the constant words that make up most of
every message cost one dictionary lookup each, done in C by map(). Every step is a pass over the
message: the cost is linear in its length, however many tokens or variables it holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from incident_loop.grouping.memo import remember
from incident_loop.grouping.tokens import CAL, UNIT, WILDCARD, Verdicts

# Digits written 0 (below), and the two control characters the normaliser uses as marks (tokens.UNIT,
# tokens.CAL) written as spaces, in the same pass: a message cannot forge a mark. UTF-8 never uses these
# byte values inside a multi-byte character.
_ZEROS = bytes.maketrans(b"123456789" + UNIT.encode() + CAL.encode(), b"000000000  ")
# Whole messages memoised (digits written 0), as many as MAX_MESSAGES of at most MAX_MEMO_LENGTH characters:
# at most about 10 MB with their templates. A longer message is templated token by token each time.
MAX_MESSAGES = 20_000
MAX_MEMO_LENGTH = 256
# Templates (and the texts they are made from) are memoised, here and by the matcher, only up to this
# length: a message may be 8,000 characters, and a memo of long ones that never recur would hold
# hundreds of MB. A longer one is worked out each time, in the same linear passes. With the counts
# (MAX_MESSAGES here, tokens.MAX_VERDICTS, the matcher's), every memo filled to its bounds holds about
# 150 MB (measured with tracemalloc); the functions have 512 MB.
MAX_MEMO_TEXT = 1024
# A quoted value. An apostrophe inside a word ("can't") does not open or close one, and a quoted
# string followed by ":" is a key ({"field": ...}), which is kept. One pattern per quote, each led by
# its quote (the scan skips to quotes), with a fixed replacement.
_QUOTED = (
    ('"', re.compile(r'"(?<!\w")[^"\n]{1,200}"(?![\w:]|\s+:)'), '"<*>"'),
    ("'", re.compile(r"'(?<!\w')[^'\n]{1,200}'(?![\w:]|\s+:)"), "'<*>'"),
    ("`", re.compile(r"`[^`\n]{1,200}`"), "`<*>`"),
)

# A token that is a variable and punctuation only: "<*>", "(<*>)", "'<*>',". A run of them is one.
# The patterns of runs are led by the space before the run's first token (the text is searched with
# a space in front): a literal first lets the scan skip to the spaces, where a token may start.
_CORE = r"[\[({\"'`]*<\*>[\])}\"'`,;:.]*"
_RUN = re.compile(rf" {_CORE}(?: {_CORE})+(?!\S)")
_ADJACENT = re.compile(r"<\*>[\])}\"'`,;:.]* [\[({\"'`]*<\*>")  # a literal first: a fast test for _RUN
_UNIT_AFTER_NUMBER = re.compile(r"<\*>(?: \x00[^\s\])},;:.]+)+")
_CAL_TOKEN = r"[\[({\"'`]*\x01\S+"
_TIMESTAMP = re.compile(rf" (?:{_CAL_TOKEN}|{_CORE})(?: (?:{_CAL_TOKEN}|{_CORE}))+(?!\S)")
_CAL_WORD = re.compile("\x01[A-Za-z]+")  # a calendar word, marked (tokens._CALENDAR: ASCII words)


@dataclass(frozen=True, slots=True)
class Options:
    """The normaliser's choices that are decided on data (the benchmark's leave-one-dataset-out)."""

    mask_quoted: bool = False  # a quoted value is one variable ('<*>'), spaces and all
    mask_keyed: bool = False  # the value of key=value is a variable, whatever it looks like


class Normaliser:
    """Messages to templates under one set of Options, with its own memo of verdicts."""

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self._verdicts = Verdicts(options.mask_keyed)
        self._verdict = self._verdicts.__getitem__
        self._joined: dict[str, str] = {}
        self._messages: dict[str, str] = {}

    def clear(self) -> None:
        self._verdicts.clear()
        self._joined.clear()
        self._messages.clear()

    def template(self, message: str) -> str:
        """The message's template: its tokens, variables masked, joined by single spaces."""
        # No digit ever reaches a template (a token holding one is, or holds, a variable), and no
        # rule depends on which digit it is: with every digit written 0, ids and numbers that differ
        # only in their digits are one token to the memo, judged once (the template is the same).
        if message.isascii():
            message = message.encode("ascii").translate(_ZEROS).decode("ascii")
        else:
            message = message.encode().translate(_ZEROS).decode()
        # Messages that differ only in their digits (most lines of a log statement) are one message here.
        found = self._messages.get(message)
        if found is not None:
            return found
        key = message
        if self.options.mask_quoted:
            for quote, pattern, masked in _QUOTED:
                if quote in message:
                    message = pattern.sub(masked, message)
        text = " ".join(map(self._verdict, message.split()))
        final = self._joined.get(text) or self._join(text)
        if len(key) <= MAX_MEMO_LENGTH:
            remember(self._messages, key, final, MAX_MESSAGES)
        return final

    def _join(self, text: str) -> str:
        """The template from its tokens' verdicts: a number and its unit, a written-out timestamp and
        a run of variables each become one <*>. Memoised (a pure function): templates recur."""
        final = text
        if UNIT in final:
            final = _UNIT_AFTER_NUMBER.sub(WILDCARD, final).replace(UNIT, "")
        if CAL in final:  # runs of variables and calendar words, in one pass
            final = _TIMESTAMP.sub(_timestamp, " " + final)[1:].replace(CAL, "")
        elif _ADJACENT.search(final) is not None:
            final = _RUN.sub(_run, " " + final)[1:]
        if len(text) <= MAX_MEMO_TEXT:
            remember(self._joined, text, final, MAX_MESSAGES)
        return final


# A run's text (with the space before it) -> its one <*>: runs recur in templates that differ elsewhere.
_RUNS: dict[str, str] = {}


def _run(match: re.Match[str]) -> str:
    """A run of variable tokens (after the space before it) is one <*>."""
    text = match.group(0)
    return _RUNS.get(text) or _memo_run(text, text[1:])


def _timestamp(match: re.Match[str]) -> str:
    """A run of variables and calendar words (after the space before it) is one <*> (a written-out
    timestamp, or a plain run); calendar words with no variable among them stay words ("May not be
    empty on Monday")."""
    text = match.group(0)
    if WILDCARD not in text:
        return text
    return _RUNS.get(text) or _memo_run(text, text[1:], calendar=True)


def _memo_run(text: str, run: str, calendar: bool = False) -> str:
    first, last = run.index(" "), run.rindex(" ")
    head, tail = run[:first], run[last + 1:]
    if calendar:  # a calendar word at either end is a variable's place
        head, tail = _CAL_WORD.sub(WILDCARD, head, 1), _CAL_WORD.sub(WILDCARD, tail, 1)
    found = " " + _one(head, run[first + 1: last], tail)
    return remember(_RUNS, text, found, MAX_MESSAGES) if len(text) <= MAX_MEMO_LENGTH else found


_CLOSES = {")": "(", "]": "[", "}": "{", '"': '"', "'": "'", "`": "`"}
_OPENS = "([{\"'`"


def _one(first: str, middle: str, last: str) -> str:
    """One <*> for a run of tokens from `first` to `last` (`middle`: the tokens between): a bracket
    opened in the first and closed in the last is kept (a bracketed list stays bracketed), one opened
    and closed inside the run is not (an optional "(1.16 KB)" after a number leaves no trace), one
    closed in the last that was opened before the run is kept ('"GET <*>" status'); the last token's
    separator is kept."""
    start, end = first.index(WILDCARD), last.rindex(WILDCARD) + 3
    opened = list(first[:start])
    for c in first[first.rindex(WILDCARD) + 3:]:  # closed again inside the first token
        if opened and _CLOSES.get(c) == opened[-1]:
            opened.pop()
    inside: list[str] = []  # opened after the first token, before the last token's last variable
    for c in middle + last[: end - 3]:
        if inside and _CLOSES.get(c) == inside[-1]:
            inside.pop()
        elif c in _OPENS:
            inside.append(c)
    tail = last[end:]
    closers = tail.rstrip(",;:.")
    head, kept = "", ""
    for c in closers:
        if inside and _CLOSES.get(c) == inside[-1]:  # closes a bracket opened inside the run
            inside.pop()
        elif opened and _CLOSES.get(c) == opened[-1]:  # closes one opened in the first token
            head, kept = opened.pop() + head, kept + c
        else:  # closes one opened before the run, which the template keeps
            kept += c
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
    _RUNS.clear()


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
