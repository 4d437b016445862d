"""How a register field is decoded: `Field` (which word, kind, scale, range) and its plan.

The tables of what the ESC and BMS registers mean are in `registers.py`; this is the
mechanism that turns a table and a model's named scales into values. Decoding never
raises: a missing word, a sentinel or an implausible value leaves that field None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"  # two words, low word first
    LO_BYTE = "lo"
    HI_BYTE = "hi"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    reg: int
    kind: Kind
    scale: float | str = 1.0  # a str names a per-model scale in ModelProfile.scales
    offset: float = 0.0
    unavailable: int | None = None  # raw value the unit sends for "not available"
    valid: tuple[float, float] | None = None  # decoded values outside this are dropped


# Plan codes of the word kinds: small ints, compared in the decode loop.
_U16, _I16, _U32, _LO_BYTE, _HI_BYTE = range(5)
_KIND_CODES: Mapping[Kind, int] = {
    Kind.U16: _U16,
    Kind.I16: _I16,
    Kind.U32: _U32,
    Kind.LO_BYTE: _LO_BYTE,
    Kind.HI_BYTE: _HI_BYTE,
}

# One field's decode, resolved: name, register, kind code, scale (None: the raw value as it
# is), offset, "not available" raw value, whether the result is rounded, plausible range.
_Step = tuple[str, int, int, float | None, float, int | None, bool, float | None, float | None]


class DecodePlan:
    """The decode of `fields` under one model's scales, worked out once.

    The tables say what every field means; walking them per reading (resolve the
    named scale, branch on the kind, test for "no scale", read the range) cost
    more than the reading's I/O with a hundred scooters polled every second. The
    plan resolves all of it when first asked for, so a decode is one loop over
    plain tuples. Same values, same None for absent / unavailable / implausible:
    a property test holds it to the table walk (tests/drivers/ninebot/).
    """

    __slots__ = ("_steps", "fields")

    def __init__(self, fields: tuple[Field, ...], scales: Mapping[str, float]) -> None:
        self.fields = fields
        steps: list[_Step] = []
        for f in fields:
            scale = scales.get(f.scale, 1.0) if isinstance(f.scale, str) else f.scale
            identity = scale == 1.0 and f.offset == 0
            # raw is an int: scaled by or offset with a float it is a float, and only
            # floats are rounded (6 places: 0.01 * 3847 must be 38.47, not 38.470000000000006)
            rounds = not identity and (isinstance(scale, float) or isinstance(f.offset, float))
            lo, hi = f.valid if f.valid is not None else (None, None)
            steps.append(
                (
                    f.name,
                    f.reg,
                    _KIND_CODES[f.kind],
                    None if identity else scale,
                    f.offset,
                    f.unavailable,
                    rounds,
                    lo,
                    hi,
                )
            )
        self._steps: tuple[_Step, ...] = tuple(steps)

    def decode(self, words: Mapping[int, int]) -> dict[str, float | int | None]:
        """Every field from `words`: scaled, offset, or None when absent/unavailable/implausible."""
        out: dict[str, float | int | None] = {}
        get = words.get
        for name, reg, kind, scale, offset, unavailable, rounds, lo, hi in self._steps:
            raw = get(reg)
            if raw is None:
                out[name] = None
                continue
            if kind:  # anything but a plain u16
                if kind == _I16:
                    if raw & 0x8000:
                        raw -= 0x10000
                elif kind == _LO_BYTE:
                    raw &= 0xFF
                elif kind == _HI_BYTE:
                    raw >>= 8
                else:
                    high = get(reg + 1)
                    if high is None:
                        out[name] = None
                        continue
                    raw |= high << 16
            if raw == unavailable:
                out[name] = None
                continue
            value: float | int = raw
            if scale is not None:
                value = raw * scale + offset
                if rounds:
                    value = round(value, 6)
            if lo is not None and not lo <= value <= hi:  # type: ignore[operator]
                out[name] = None
                continue
            out[name] = value
        return out


# Plans by (table, model scales): a few entries, made on first use. The table's identity is
# checked on every hit, so a table that went away and whose id was reused is planned anew.
_PLANS: dict[tuple[int, tuple[tuple[str, float], ...]], DecodePlan] = {}


def decode_plan(fields: tuple[Field, ...], scales: Mapping[str, float]) -> DecodePlan:
    key = (id(fields), tuple(scales.items()))
    plan = _PLANS.get(key)
    if plan is None or plan.fields is not fields:
        plan = _PLANS[key] = DecodePlan(fields, scales)
    return plan


def decode_fields(
    fields: tuple[Field, ...], words: Mapping[int, int], scales: Mapping[str, float]
) -> dict[str, float | int | None]:
    """Every field of `fields` from `words`: scaled, offset, or None when absent/unavailable/implausible."""
    return decode_plan(fields, scales).decode(words)
