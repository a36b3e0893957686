"""The grouping's cost is linear in a message's length: hundreds of tokens, long runs of variables,
long tokens. Measured as a work ratio (CPU time of the best of several repetitions) between messages
ten times longer: linear work gives about 10, quadratic about 100; the bound sits between, far from
both, so machine noise cannot flip it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from incident_loop.grouping.matcher import clear_memos, decide
from incident_loop.grouping.memory_index import MemoryPatternIndex
from incident_loop.grouping.normalise import template

BOUND = 30  # 10x the length: linear work is about 10x, quadratic about 100x


def _message(kind: str, n: int) -> str:
    rng = random.Random(f"{kind}:{n}")
    pieces: dict[str, Callable[[], str]] = {
        "numbers": lambda: str(rng.randrange(10**9)),
        "mixed": lambda: rng.choice(["alpha", "beta", f"id={rng.randrange(99999)}", "(x,1)",
                                     f"0x{rng.randrange(1 << 30):x}", "Jun", "5", "KB", "'q w'",
                                     "http://a.example.com/c", "redis:6379", "true", "[1]"]),
        "bracketed": lambda: f"({rng.randrange(999)})",
        "calendar": lambda: rng.choice(["Jun", "5", "Mon", "12:00:01", "UTC"]),
        "quotes": lambda: "'" + rng.choice(["a", "b c", "d"]),
    }
    if kind == "long token":  # one token, almost a URL: no scheme ends before its "://"
        return "a" * (5 * n) + "://"
    return " ".join(pieces[kind]() for _ in range(n))


def _work(fn: Callable[[], object], repeat: int = 7, loops: int = 10) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(loops):
            clear_memos()  # cold: every token judged anew
            fn()
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("kind", ["numbers", "mixed", "bracketed", "calendar", "quotes", "long token"])
def test_normalising_is_linear_in_the_message_length(kind: str) -> None:
    short, long = _message(kind, 100), _message(kind, 1000)
    ratio = _work(lambda: template(long)) / _work(lambda: template(short))
    assert ratio < BOUND, f"{kind}: 10x the length cost {ratio:.1f}x"


def _word(i: int) -> str:
    letters = ""
    while True:
        i, r = divmod(i, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[r]
        if i == 0:
            return "k" + letters


def test_deciding_is_linear_in_the_message_length() -> None:
    """decide() on the fuzzy path: no exact hit, 50 stored patterns of the same length and first word
    to compare with, each unlike the message in a couple of words."""

    def setup(n: int) -> tuple[MemoryPatternIndex, str]:
        words = [f"{_word(i)} {i}" for i in range(n // 2)]  # "kab 17": a word and a variable
        index = MemoryPatternIndex()
        for i in range(50):
            sibling = words[:]
            sibling[1 + i % (n // 2 - 1)] = f"other{_word(i)} 1"
            index.record("t", decide(" ".join(sibling), "E", "t", index, threshold=1.0))
        probe = words[:]
        probe[-1] = "unlike 2"
        return index, " ".join(probe)

    (short_index, short), (long_index, long) = setup(100), setup(1000)
    assert decide(long, "E", "t", long_index).match_type != "exact"
    assert len(long_index.candidates("t", "E", decide(long, "E", "t", long_index).candidate_key)) >= 40
    ratio = (_work(lambda: decide(long, "E", "t", long_index), loops=3)
             / _work(lambda: decide(short, "E", "t", short_index), loops=3))
    assert ratio < BOUND, f"10x the length cost {ratio:.1f}x"
