"""Perturbations of labelled logs that mimic a system the grouping has never seen.

Each message is aligned with its event's template (`EventTemplate`), which tells its constant text
from its variable values. A perturbation rewrites variable values by their kind (a number, a time,
an address, an id, a path), or rewrites the message's form the same way for every message of an
event (key=value as JSON, header fields, casing and punctuation), so every event stays one event and
the labels stay valid. Deterministic: every choice comes from a random generator seeded by the
perturbation, the dataset, the event and the value's position (or the message's line), never by
Python's hash().

Choices made per dataset (a header layout, a casing and punctuation style) mimic one system's way of
writing; per event and position (a number or id format) one log statement's; per message (a value,
a host, a thread) what varies between lines; per stretch of lines (a name written for an id) a
session's or a burst's. A form chosen per event would tell events apart that
the original text does not, and flatter the grouping: only a level (one of three) is.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

Segments = list[tuple[bool, str]]  # (is a variable, text), in order

_EPOCH = datetime(2024, 5, 1, 10, 22, 3, 123000, tzinfo=UTC)
_NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
          "kilo", "lima", "quiet-otter", "brave-lynx", "calm-heron", "swift-panda")
_LEVELS = ("INFO", "WARN", "ERROR", "DEBUG", "NOTICE", "I", "W", "E")
_COMPONENTS = ("svc.Worker", "core/scheduler", "net.Dispatcher", "storage", "AuthManager", "io_engine")
_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.{ms}Z", "%a, %d %b %Y %H:%M:%S +0000", "%b %d %H:%M:%S", "%m/%d/%Y %I:%M:%S %p",
    "[%d/%b/%Y:%H:%M:%S -0700]", "%a %b %d %H:%M:%S UTC %Y", "{epoch}", "%Y%m%d-%H:%M:%S:{ms}",
    "%d.%m.%Y %H:%M:%S,{ms}", "%A, %B %d, %Y %H:%M",
)
_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T-]\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[.,]\d+)?)?"
                        r"|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?")
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?\d+\.\d+")
_IPV4 = re.compile(r"/?(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?")
_HEXISH = re.compile(r"0x[0-9a-fA-F]+|(?=[0-9]*[a-fA-F])[0-9a-fA-F]{8,}"
                     r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F-]{19,}")
_PATH = re.compile(r"/?(?:[\w.-]+/)+[\w.-]*")
_URL = re.compile(r"[a-z]+://\S+")
_PREFIXED_ID = re.compile(r"([A-Za-z]+[_-])(-?[\dA-Za-z_]*\d[\dA-Za-z_]*)")
_HOSTNAME = re.compile(r"[A-Za-z][\w-]*(?:\.[\w-]+)+")
_KEY_VALUE = re.compile(r"(?<![\w\"])([A-Za-z_][\w.-]*)=([^\s,;)\]}]*)")
_KEY_COLON = re.compile(r"(?<![\w\"])([A-Za-z_][\w-]*): (\S+)")


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))  # str seeds are hashed with sha512: stable


def _constant(part: str) -> str:
    return r"\s*".join(re.escape(word) for word in part.split()) if part.strip() else r"\s*"


@lru_cache(maxsize=4096)
def _template_regex(template: str) -> re.Pattern[str]:
    """The template as a regex, one group a variable. Each variable but the last takes the text up to the
    first place its constant text follows, once and for all (an atomic group): a message that does not
    fit is told so in one pass, where backtracking over every way to split it between many variables
    would take hours. Only the last variable stretches, up to the end."""
    parts = [part for part in re.split(r"(<\*>)", template.strip()) if part]
    last = max((i for i, part in enumerate(parts) if part == "<*>"), default=-1)
    out, i = [], 0
    while i < len(parts):
        if parts[i] != "<*>":
            out.append(_constant(parts[i]))
            i += 1
            continue
        after = _constant(parts[i + 1]) if i + 1 < len(parts) and parts[i + 1] != "<*>" else ""
        out.append(f"(.*?){after}" if i == last else f"(?>(.*?){after})")
        i += 2 if after else 1
    return re.compile("".join(out) + r"\s*$", re.S)


def align(content: str, template: str) -> Segments | None:
    """The message as constant and variable segments, by its event's template (None if it does not fit)."""
    match = _template_regex(template).match(content.strip())
    if match is None:
        return None
    segments: Segments = []
    at = 0
    text = content.strip()
    for i in range(1, (match.lastindex or 0) + 1):
        start, end = match.span(i)
        segments.append((False, text[at:start]))
        value = text[start:end]
        lead, trail = len(value) - len(value.lstrip()), len(value) - len(value.rstrip())
        segments[-1] = (False, segments[-1][1] + value[:lead])
        segments.append((True, value.strip()))
        segments.append((False, value[len(value) - trail:] if trail else ""))
        at = end
    segments.append((False, text[at:]))
    return segments


def _join(segments: Segments) -> str:
    return "".join(text for _, text in segments)


def _timestamp(rng: random.Random, fmt: str) -> str:
    moment = _EPOCH + timedelta(seconds=rng.randrange(0, 90 * 86400), milliseconds=rng.randrange(1000))
    text = fmt.replace("{ms}", f"{moment.microsecond // 1000:03d}").replace("{epoch}",
                                                                         str(int(moment.timestamp() * 1000)))
    return moment.strftime(text)


def _number(value: str, style: int) -> str:
    n = int(value)
    return (f"0x{n & 0xFFFFFFFF:x}", f"{n:010d}", f"{n:.2f}", f"{n:.3e}", f"{n:,}", f"{n} ms", f"+{n}" if n >= 0
            else str(n), f"{n}%")[style]


def _id(rng: random.Random, style: int, length: int) -> str:
    """An id as a UUID, a ULID, base64url, upper-case hex, or (style 4) a readable name without digits."""
    if style == 0:
        return "-".join("".join(rng.choices("0123456789abcdef", k=k)) for k in (8, 4, 4, 4, 12))
    if style == 1:
        return "".join(rng.choices("0123456789ABCDEFGHJKMNPQRSTVWXYZ", k=26))
    if style == 2:
        return "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=max(length, 12)))
    if style == 3:
        return "".join(rng.choices("0123456789ABCDEF", k=max(length, 8)))
    return rng.choice(_NAMES)  # a readable name, no digit at all


def _restyle(value: str, slot_rng: random.Random, rng: random.Random) -> str:
    """The value in another id / hex / path / URL / IP style (the style chosen per event and position)."""
    style = slot_rng.randrange(5)
    ip = _IPV4.fullmatch(value)
    if ip is not None:
        port = f":{ip.group(2)}" if ip.group(2) else ""
        a, b = rng.randrange(65536), rng.randrange(65536)
        return (f"[2001:db8::{a:x}:{b:x}]{port}", f"ip-10-{a % 256}-{b % 256}-{a % 97}.ec2.internal{port}",
                f"fe80::{a:x}%eth0", f"{rng.choice(_NAMES)}.corp.example.com{port}", f"10.{a % 256}.{b % 256}.7")[style]
    if _URL.fullmatch(value):
        return (f"s3://bucket-{rng.randrange(99)}/{rng.choice(_NAMES)}/obj", f"grpc://{rng.choice(_NAMES)}:443/Svc.Call",
                f"http://[::1]:{rng.randrange(1024, 65535)}/x?y={rng.randrange(999)}", "file:///tmp/x.sock",
                f"https://{rng.choice(_NAMES)}.example.org/a/b")[style]
    if _PATH.fullmatch(value) and "/" in value:
        return (f"C:\\ProgramData\\{rng.choice(_NAMES)}\\log{rng.randrange(99)}.txt",
                f"./{rng.choice(_NAMES)}/{rng.choice(_NAMES)}.cfg", f"~/{rng.choice(_NAMES)}/data",
                f"/var/lib/{rng.choice(_NAMES)}/{rng.randrange(9999)}", f"s3://{rng.choice(_NAMES)}/k")[style]
    prefixed = _PREFIXED_ID.fullmatch(value)
    if prefixed is not None:  # an id keeps its prefix and takes another form (never a readable name)
        return prefixed.group(1) + _id(rng, style % 4, len(prefixed.group(2)))
    if _HEXISH.fullmatch(value):
        return _id(rng, style % 4, len(value))
    if _HOSTNAME.fullmatch(value) and not value[0].isdigit():
        return f"{rng.choice(_NAMES)}.{('svc', 'internal', 'example.net', 'lan', 'cluster.local')[style]}"
    return value


def _each_value(fn: Callable[[str, random.Random, random.Random], str]) -> Callable[..., Segments]:
    def apply(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
        out: Segments = []
        slot = 0
        for is_var, text in segments:
            if is_var and text:
                text = fn(text, _rng(name, dataset, event, slot), _rng(name, dataset, line, slot))
                slot += 1
            out.append((is_var, text))
        return out
    return apply


def _formats_value(value: str, slot_rng: random.Random, rng: random.Random) -> str:
    if _DATE_LIKE.fullmatch(value):
        return _timestamp(rng, slot_rng.choice(_TIMESTAMP_FORMATS))
    if _INT.fullmatch(value) and len(value) < 19:
        return _number(value, slot_rng.randrange(8))
    if _FLOAT.fullmatch(value):
        return (f"{float(value):.3e}", f"{float(value):.6f}", f"{value}%", f"{value} s")[slot_rng.randrange(4)]
    return value


def timestamps_numbers(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
    """Numbers and times in other formats (per event and position), and a timestamp field appended
    (in the dataset's format)."""
    out = _each_value(_formats_value)(segments, event, line, dataset, name)
    fmt = _rng(name, dataset, "ts").choice(_TIMESTAMP_FORMATS)
    return [*out, (False, " at "), (True, _timestamp(_rng(name, dataset, line, "ts"), fmt))]


ids_paths_addresses = _each_value(_restyle)


def payloads(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
    """key=value pairs written as JSON-ish "key": "value", "key: value" as key=value, and a JSON
    payload appended (its keys the dataset's; its values, a readable user name among them, the
    message's)."""
    text = _join(segments)
    if "=" in text:
        text = _KEY_VALUE.sub(lambda m: f'"{m.group(1)}": "{m.group(2)}"', text)
    else:
        text = _KEY_COLON.sub(lambda m: f"{m.group(1)}={m.group(2)}", text)
    keys = _rng(name, dataset).sample(["request_id", "attempt", "user", "region", "trace"], 3)
    rng = _rng(name, dataset, line)
    values = {"request_id": f'"{_id(rng, 0, 0)}"', "attempt": str(rng.randrange(1, 9)),
              "user": f'"{rng.choice(_NAMES)}"', "region": f'"{rng.choice(_NAMES)}-{rng.randrange(1, 4)}"',
              "trace": f'"{_id(rng, 3, 16)}"'}
    return [(False, text + " {" + ", ".join(f'"{k}": {values[k]}' for k in keys) + "}")]


def headers(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
    """Header fields the message did not have: a timestamp, a level, a host, a thread and a component,
    in an order and place (before or after the message) that is the dataset's. The component is the
    dataset's; the level the event's, one of three (so it tells events apart no more than a real
    level does); time, host (a name without digits) and thread the message's."""
    layout = _rng(name, dataset)
    fields = layout.sample(["time", "level", "host", "thread", "component"], layout.randrange(3, 6))
    before = layout.random() < 0.7
    fmt, component = layout.choice(_TIMESTAMP_FORMATS), layout.choice(_COMPONENTS) + ":"
    levels = _LEVELS[:3] if layout.random() < 0.5 else _LEVELS[5:]
    per_event, rng = _rng(name, dataset, event), _rng(name, dataset, line)
    values = {"time": _timestamp(rng, fmt), "level": per_event.choice(levels), "host": rng.choice(_NAMES),
              "thread": f"[worker-{rng.randrange(1, 64)}]", "component": component}
    head = " ".join(values[f] for f in fields)
    return [(False, f"{head} {_join(segments)}" if before else f"{_join(segments)} ({head})")]


_CASINGS: tuple[Callable[[str], str], ...] = (str.lower, str.upper, str.title, lambda s: s)
_PUNCTUATION = ((": ", " - "), (", ", "; "), ("(", "["), (" ", "  "))


def casing_punctuation(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
    """Every message in another casing and punctuation: the dataset's style, the same for all its
    events (a style chosen per event would tell events apart and flatter the grouping)."""
    rng = _rng(name, dataset)
    text = _CASINGS[rng.randrange(len(_CASINGS) - 1)](_join(segments))  # never as-is
    old, new = _PUNCTUATION[rng.randrange(len(_PUNCTUATION))]
    text = text.replace(old, new).replace(")", "]") if old == "(" else text.replace(old, new)
    return [(False, text + "." if rng.random() < 0.5 and not text.endswith(".") else text)]


# Lines in which a name written for an id holds (names_in_runs): a session, a user's retries, one host's
# burst of errors.
RUN_LINES = 50


def _identifier(value: str) -> bool:
    """A hex id, an IP address or a host name: what a system may write as a readable name instead (an
    id with a prefix keeps it, as in _restyle)."""
    return bool(_IPV4.fullmatch(value) or (_HEXISH.fullmatch(value) and not _PREFIXED_ID.fullmatch(value))
                or (_HOSTNAME.fullmatch(value) and not value[0].isdigit()))


def names_in_runs(segments: Segments, event: str, line: int, dataset: str, name: str) -> Segments:
    """Hex ids and addresses written as readable names (a user, a host; no digit) in a third of the
    positions that hold one (chosen per event and position), the same name for every line of the event
    within a stretch of RUN_LINES lines. The other perturbations draw a value per line; in logs values
    come in runs, and a pattern that has seen one name a few times in a row settles on it."""
    out: Segments = []
    slot = 0
    for is_var, text in segments:
        if is_var and text:
            if _identifier(text) and _rng(name, dataset, event, slot).random() < 1 / 3:
                text = _rng(name, dataset, event, slot, line // RUN_LINES).choice(_NAMES)
            slot += 1
        out.append((is_var, text))
    return out


# In the order "all" applies them: values first (while they are known), then the message's form.
PERTURBATIONS: dict[str, Callable[..., Segments]] = {
    "ids as names, in runs": names_in_runs,
    "id / hex / path / URL / IP styles": ids_paths_addresses,
    "timestamp and number formats": timestamps_numbers,
    "key=value as JSON-ish payloads": payloads,
    "extra and reordered header fields": headers,
    "casing and punctuation": casing_punctuation,
}


def perturb(name: str, dataset: str, messages: list[str], events: list[str], templates: list[str]) -> list[str]:
    """The dataset's messages under one perturbation ("all": every one, in turn); a message that does
    not fit its template is left as it is."""
    steps = list(PERTURBATIONS) if name == "all" else [name]
    out = []
    for line, (message, event, template) in enumerate(zip(messages, events, templates, strict=True)):
        segments = align(message, template)
        if segments is not None:
            for step in steps:
                segments = PERTURBATIONS[step](segments, event, line, dataset, step)
            message = _join(segments)
        out.append(message)
    return out
