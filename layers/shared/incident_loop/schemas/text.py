"""Text PostgreSQL can store: no NUL character, no lone surrogate. Checked at every boundary (the HTTP API's
requests, the queues' messages), so a value the database would refuse is a clear error at the door, never a
DataError deep in a write (which for failures counted against the shared catalog-persist breaker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _strings(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string in a parsed JSON value (keys too), with where it is: an explicit stack, no recursion."""
    stack = [(loc, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield where, key
                stack.append(((*where, key), child))
        elif isinstance(item, list):
            stack.extend(((*where, i), child) for i, child in enumerate(item))


def _text_error(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def text_errors(value: Any, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Errors, in Powertools' validation form, for each string that PostgreSQL text cannot hold."""
    errors = []
    for where, text in _strings(value, loc):
        reason = _text_error(text)
        if reason:
            errors.append({"type": "string_not_storable", "loc": where, "msg": reason, "input": None})
    return sorted(errors, key=lambda e: [str(p) for p in e["loc"]])


def first_text_error(value: Any, loc: tuple[Any, ...] = ()) -> str | None:
    """The first string PostgreSQL text cannot hold, as "where: why", or None."""
    errors = text_errors(value, loc)
    if not errors:
        return None
    where = ".".join(str(p) for p in errors[0]["loc"]) or "value"
    return f"{where} {errors[0]['msg']}"


def storable(text: str) -> str:
    """The text with what PostgreSQL text cannot hold replaced (U+FFFD for a NUL, "?" for a lone surrogate): for
    text the product records but did not choose, such as an endpoint's error body."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable_json(value: Any) -> Any:
    """A JSON value with storable() applied to every string, keys included (a copy when anything changes)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v) for v in value]
    return value
