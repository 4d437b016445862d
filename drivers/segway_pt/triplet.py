"""The PT pack BMS's only frame: a 3-byte triplet `[checksum][MSB][LSB]` (protocols.md §2.1).

The host writes a register number to the BMS (I²C 0x31) and reads three bytes back. A triplet
is valid when `(register + checksum + MSB + LSB + 1) % 64 == 0`. The rule is weak: it sees
every change of the sum modulo 64, so a flipped bit 0-5 of any byte is always caught, but a
flipped bit 6 or 7 never is (it changes the sum by 64 or 128). The decoders' range checks and
the double read of the state of charge (`link.py`) are the second line behind it.

This module is pure: bytes in, a `Triplet` or a `BadTriplet` with its reason out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TRIPLET_LEN: Final = 3
MODULUS: Final = 64


def checksum_ok(register: int, checksum: int, msb: int, lsb: int) -> bool:
    """The BMS's checksum rule on one triplet read from `register`."""
    return (register + checksum + msb + lsb + 1) % MODULUS == 0


def checksum_for(register: int, msb: int, lsb: int, high_bits: int = 0) -> int:
    """A checksum byte that makes the triplet valid; `high_bits` (0-3) picks which of the four.

    Only the low six bits are fixed by the rule; the real packs set the top two freely
    (0xAA, 0x2C, 0xCA all occur), so an emulator needs to choose them.
    """
    if not 0 <= high_bits <= 3:
        raise ValueError("high_bits is 0-3")
    return (-(register + msb + lsb + 1)) % MODULUS + MODULUS * high_bits


@dataclass(frozen=True, slots=True)
class Triplet:
    register: int
    checksum: int
    msb: int
    lsb: int

    @property
    def word(self) -> int:
        """MSB and LSB as one 16-bit value."""
        return self.msb << 8 | self.lsb


class BadTriplet(ValueError):
    """A reply that is no valid triplet; `short` tells a short reply from a bad checksum."""

    def __init__(self, register: int, data: bytes, short: bool) -> None:
        self.register = register
        self.data = data
        self.short = short
        what = f"short reply ({len(data)} bytes)" if short else "bad checksum"
        super().__init__(f"register {register:#04x}: {what}: {data.hex(' ') or 'nothing'}")


def parse_triplet(register: int, data: bytes) -> Triplet:
    """The triplet in `data`, read after writing `register`; BadTriplet if it is not one."""
    if not 0 <= register <= 0xFF:
        raise ValueError(f"register {register} is not a byte")
    if len(data) != TRIPLET_LEN:
        raise BadTriplet(register, bytes(data), short=True)
    checksum, msb, lsb = data
    if not checksum_ok(register, checksum, msb, lsb):
        raise BadTriplet(register, bytes(data), short=False)
    return Triplet(register, checksum, msb, lsb)


def encode_triplet(register: int, word: int, high_bits: int = 0) -> bytes:
    """The 3 bytes a BMS would answer with `word` (for emulators and property tests)."""
    msb, lsb = word >> 8 & 0xFF, word & 0xFF
    return bytes((checksum_for(register, msb, lsb, high_bits), msb, lsb))
