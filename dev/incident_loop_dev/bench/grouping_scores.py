"""Scores of a grouping against labelled logs: GA, PA and FTA (the LogPAI / Loghub-2.0 definitions).

The only code of the grouping benchmark that reads labels (`EventId`, `EventTemplate`).

* GA, grouping accuracy: the share of messages whose predicted group is exactly the set of messages
  of their true event.
* PA, parsing accuracy: the share of messages whose produced template equals their event's template.
* FTA, template accuracy (Khan et al., 2022): F1 over templates, where a produced template is correct
  when its group is exactly a true event's messages and its text equals that event's template.

Templates are compared after one canonical form applied to both sides alike, the rules of Loghub-2.0's
template correction that hold for any system (its per-dataset "user strings" are left out): digits-only
tokens are variables, a word glued to a variable is a variable, dot-, colon- or slash-joined variables
are one, and adjacent variables are one. Two rules follow from how Bridge 1 writes a template (a run of
variables is one <*>, `key=value` is written `key= <*>`): variables separated only by spaces or
punctuation are one, and whitespace is not compared.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import lru_cache

WILDCARD = "<*>"
# Loghub-2.0's path delimiters: a template is cut into pieces on these (kept), then each piece is judged.
_CUT = re.compile(r"(\s+|[,!;:=|\"'\[\](){}])")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)*")
_PATH = re.compile(r"(?:/[^/]*)+")
_MARKS = frozenset(",!;:=|\"'[](){}.-/#@")


@lru_cache(maxsize=200_000)
def canonical(template: str) -> tuple[str, ...]:
    """The template as canonical pieces: what PA and FTA compare."""
    pieces: list[str] = []
    for piece in _CUT.split(template):
        if not piece or piece.isspace():
            continue
        if WILDCARD in piece or _NUMBER.fullmatch(piece) or _PATH.fullmatch(piece):
            piece = WILDCARD  # a word glued to a variable, a number, a path
        pieces.append(piece)
    # Variables separated only by punctuation (or by nothing) are one variable.
    out: list[str] = []
    pending: list[str] = []  # punctuation seen since the last variable
    for piece in pieces:
        if piece == WILDCARD:
            if not (out and out[-1] == WILDCARD):
                out += pending
                out.append(piece)
            pending.clear()
        elif out and out[-1] == WILDCARD and all(c in _MARKS for c in piece):
            pending.append(piece)
        else:
            out += pending
            pending.clear()
            out.append(piece)
    return tuple(out + pending)


def grouping_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of messages whose predicted group is exactly the set of messages of their true group."""
    by_pred: dict[str, set[int]] = defaultdict(set)
    by_true: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_pred[p].add(i)
        by_true[t].add(i)
    correct = sum(len(members) for members in by_pred.values() if by_true[truth[min(members)]] == members)
    return correct / len(truth) if truth else 1.0


def parsing_accuracy(produced: Sequence[str], true_templates: Sequence[str]) -> float:
    """Share of messages whose produced template equals their event's template (canonical forms)."""
    if not produced:
        return 1.0
    same = sum(canonical(p) == canonical(t) for p, t in zip(produced, true_templates, strict=True))
    return same / len(produced)


def template_accuracy(predicted: Sequence[str], produced: Sequence[str], truth: Sequence[str],
                      true_templates: Sequence[str]) -> float:
    """FTA: F1 of precision (correct templates / produced templates) and recall (/ true templates).

    A group's template is the one its last message was given (the pattern's template at the end)."""
    by_pred: dict[str, set[int]] = defaultdict(set)
    by_true: dict[str, set[int]] = defaultdict(set)
    final: dict[str, str] = {}
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_pred[p].add(i)
        by_true[t].add(i)
        final[p] = produced[i]
    correct = 0
    for p, members in by_pred.items():
        first = min(members)
        if by_true[truth[first]] == members and canonical(final[p]) == canonical(true_templates[first]):
            correct += 1
    if not correct:
        return 0.0
    precision, recall = correct / len(by_pred), correct / len(by_true)
    return 2 * precision * recall / (precision + recall)


def same_partition(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two labellings group the messages identically (whatever the ids)."""
    return len(set(a)) == len(set(b)) == len(set(zip(a, b, strict=True)))


def join_outcomes(decisions: Sequence[tuple[str, str | None]], groups: Sequence[str], truth: Sequence[str]
                  ) -> list[bool | None]:
    """For each decision (match_type, pattern joined or None), whether the message belongs with the
    pattern's members: its true event is the commonest among the messages the pattern held at the
    time. None for a new pattern (there are no members to belong with)."""
    members: dict[str, Counter[str]] = defaultdict(Counter)
    out: list[bool | None] = []
    for (_, joined), group, event in zip(decisions, groups, truth, strict=True):
        if joined is None:
            out.append(None)
        else:
            held = members[joined]
            out.append(bool(held) and held.most_common(1)[0][0] == event)
        members[group][event] += 1
    return out
