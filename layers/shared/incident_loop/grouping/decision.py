"""What the matcher decides for one message (MatchDecision), in the words both pattern indexes apply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from incident_loop.grouping.classify import classify
from incident_loop.grouping.tokens import WILDCARD


class MatchDecision:
    """What the matcher decided for one message; `pattern_id` is None for a new pattern."""

    __slots__ = ("match_type", "pattern_id", "confidence", "signature", "template", "merged_template",
                 "error_type", "message", "new_alias", "_tokens", "similarity", "differing", "generalised",
                 "absorbed", "_cover")

    def __init__(self, match_type: str, pattern_id: str | None, confidence: float, signature: str,
                 template: str, merged_template: str, error_type: str, message: str,
                 toks: tuple[str, ...] | None = None, new_alias: bool | None = None,
                 similarity: float = 1.0, differing: int = 0, generalised: int = 0,
                 absorbed: tuple[str, ...] = (), cover: tuple[str, ...] | None = None) -> None:
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
        # The confidence's inputs (kept for the benchmark's calibration): a fuzzy join's similarity
        # to the pattern, the constant words that disagreed, and the constant words of this message
        # that the pattern's template has generalised to <*>.
        self.similarity = similarity
        self.differing = differing
        self.generalised = generalised
        # Sibling patterns this decision merges into `pattern_id` (GroupingConfig.merge_after).
        self.absorbed = absorbed
        # What the pattern's template is generalised with (merged with it as it is when recorded): the message's
        # tokens, and the absorbed siblings' templates merged into them (their members are the pattern's now).
        self._cover = cover

    # Derived on demand: an exact hit (the common case) needs none of them.
    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens if self._tokens is not None else split_template(self.template)

    @property
    def cover(self) -> tuple[str, ...]:
        return self._cover if self._cover is not None else self.tokens

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


def split_template(template_text: str) -> tuple[str, ...]:
    return tuple(template_text.split(" ")) if template_text else ()


def decision_arg(args: tuple[Any, ...]) -> MatchDecision:
    """`decision` or the older `error_type, decision` (the error type is the decision's own)."""
    if len(args) == 1 and isinstance(args[0], MatchDecision):
        return args[0]
    if len(args) == 2 and isinstance(args[1], MatchDecision):
        if args[0] != args[1].error_type:
            raise ValueError(f"error type {args[0]!r} is not the decision's {args[1].error_type!r}")
        return args[1]
    raise TypeError("expected a MatchDecision (optionally preceded by its error type)")


# Characters of the first token a candidate key keeps: the key is in a btree index, whose entries
# PostgreSQL bounds (2704 bytes); a longer first word (a blob without digits) would make the pattern
# impossible to store. Siblings whose first words share these characters are compared as usual.
MAX_KEY_WORD = 64


def candidate_key(template_tokens: Sequence[str]) -> str:
    """Token count and the first token, or <*> when it holds a variable (the first two levels of
    Drain's prefix tree, flattened into one key): siblings share it, so it is what the PostgreSQL
    index is on. Only the first token: a word further on may be a variable that holds no digit (a
    host or a user name in a header), and siblings must still meet. Of a long first token, its first
    MAX_KEY_WORD characters (migrations/0014 keys the stored patterns alike)."""
    first = template_tokens[0] if template_tokens else WILDCARD
    return f"{len(template_tokens)}:{WILDCARD if WILDCARD in first else first[:MAX_KEY_WORD]}"
