"""A byte tape that hostile cases are built from: hypothesis draws the bytes, builders read them.

Why a tape: on this machine hypothesis spends ~0.1 ms on every single draw, and a near-valid
document with a few mutations takes dozens of draws (several ms per case, minutes per
10,000). Drawn as one `st.binary()`, a whole case costs one draw; hypothesis still
generates, mutates and shrinks it, and the builders are written so that shrinking means
something: a tape of zeros (or an exhausted one) reads as "the first choice", which every
builder makes the plain, valid case - so a shrunk failure is the smallest hostile change.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

CONTROL = "".join(map(chr, range(32))) + "\x7f\u0085\u2028\u2029\ufeff"
# Characters that break ids, topics, line protocol, logs and JSON, and some that merely look odd.
HOSTILE_CHARS = (
    CONTROL + " /+#$\\\"',=:;{}[]<>%&*?é\u0301\u200b\u202e\ufffd\U0001f6f4\U00010000aZ9-_.aZ9-_."
)


class Tape:
    """Reads numbers and choices from bytes; past the end it reads zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out

    def below(self, n: int) -> int:
        """0 <= value < n (from as many bytes as n needs)."""
        if n <= 1:
            return 0
        width = (n.bit_length() + 7) // 8
        return int.from_bytes(bytes(self.byte() for _ in range(width)), "big") % n

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def weighted(self, options: Sequence[tuple[int, T]]) -> T:
        """A choice by weight; the first option is the zero tape's."""
        total = sum(w for w, _ in options)
        roll = self.below(total)
        for weight, option in options:
            if roll < weight:
                return option
            roll -= weight
        raise AssertionError("unreachable")

    def int64(self) -> int:
        return int.from_bytes(self.take(8).ljust(8, b"\0"), "big", signed=True)

    def float64(self) -> float:
        """Any double: NaN, infinities and subnormals included."""
        return float(struct.unpack(">d", self.take(8).ljust(8, b"\0"))[0])

    def text(self, max_len: int = 24, alphabet: str = HOSTILE_CHARS) -> str:
        return "".join(
            alphabet[self.byte() % len(alphabet)] for _ in range(self.below(max_len + 1))
        )

    def utf8(self, max_len: int = 24) -> str:
        """Arbitrary bytes read as UTF-8 (undecodable bytes replaced): unicode from anywhere."""
        return self.take(self.below(max_len + 1)).decode("utf-8", "replace")


def tapes(max_size: int = 96) -> st.SearchStrategy[Tape]:
    return st.binary(max_size=max_size).map(Tape)
