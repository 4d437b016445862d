"""How a register field is decoded: `Field` (which word, kind, scale, range) and its plan.

The tables of what the ESC and BMS registers mean are in `registers.py`; this is the
mechanism that turns a table and a model's named scales into values. Decoding never
raises: a missing word, a sentinel or an implausible value leaves that field None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


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
    plan resolves all of it when first asked for, into one generated function
    (`_compile`) that does only each field's own arithmetic. Same values, same None
    for absent / unavailable / implausible: property tests hold it to the table
    walk (tests/drivers/ninebot/test_ninebot_decode_plan.py).
    """

    __slots__ = ("_steps", "decode", "fields")

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

        self.decode: Callable[[Mapping[int, int]], dict[str, float | int | None]] = _compile(
            self._steps
        )
        """Every field from `words` (16-bit words, as a `RegisterBank` holds them): scaled,
        offset, or None when absent/unavailable/implausible."""


def _power_of_ten(scale: float | None, offset: float) -> float | None:
    """10.0 ** k (signed) when `raw * scale + offset` rounded to 6 places is `raw / that`.

    For scale = ±1e-k (k <= 6) and no offset, the 6-place rounding only undoes the product's
    error: the result is the decimal raw / 10**k, and IEEE division by the exact 10.0**k
    gives that decimal's nearest double, as round() does - for any raw below 2**32 (a
    product's error, below 1e-7, never reaches the rounding's half step of 5e-7). The
    division is several times cheaper than the product and the round."""
    if scale is None or not isinstance(scale, float) or offset != 0:
        return None
    for k in range(1, 7):
        if abs(scale) == float(f"1e-{k}"):
            return float(10**k) if scale > 0 else -float(10**k)
    return None


def _compile(steps: tuple[_Step, ...]) -> Callable[[Mapping[int, int]], dict[str, Any]]:
    """The steps as one straight-line function: no loop, no tuple unpacking, no branch on
    the kind or on an absent scale - just the field's own arithmetic, with the step's
    constants written in (their reprs: exact for ints and floats).

    Generated like the `__init__` of a dataclass, from the tables only; the property tests
    hold it to the table walk for the real tables and for arbitrary ones."""
    lines = ["def decode(words):", "    get = words.get"]
    for i, (_, reg, kind, scale, offset, unavailable, rounds, lo, hi) in enumerate(steps):
        v = f"v{i}"
        body: list[str] = []
        if kind == _I16:
            body.append("if raw & 0x8000: raw -= 0x10000")
        elif kind == _LO_BYTE:
            body.append("raw &= 0xFF")
        elif kind == _HI_BYTE:
            body.append("raw >>= 8")
        elif kind == _U32:
            body += [
                f"high = get({reg + 1!r})",
                "if high is None: raw = None",
                "else: raw |= high << 16",
            ]
        tail: list[str] = []
        divisor = _power_of_ten(scale, offset) if rounds else None
        if scale is None:
            tail.append(f"{v} = raw")
        elif divisor is not None:
            tail.append(f"{v} = raw / {divisor!r} + {offset!r}")  # + 0.0: -0.0 becomes 0.0
        elif rounds:
            tail.append(f"{v} = round(raw * {scale!r} + {offset!r}, 6)")
        else:
            tail.append(f"{v} = raw * {scale!r} + {offset!r}")
        if lo is not None:
            tail.append(f"if not {lo!r} <= {v} <= {hi!r}: {v} = None")
        guard = "raw is None"
        if unavailable is not None:
            guard += f" or raw == {unavailable!r}"
        lines.append(f"    raw = get({reg!r})")
        if body:
            lines.append("    if raw is not None:")
            lines += [f"        {line}" for line in body]
        lines.append(f"    if {guard}: {v} = None")
        lines.append("    else:")
        lines += [f"        {line}" for line in tail]
    names = ", ".join(f"{step[0]!r}: v{i}" for i, step in enumerate(steps))
    lines.append(f"    return {{{names}}}")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<ninebot decode plan>", "exec"), namespace)  # noqa: S102 - our own tables
    decode: Callable[[Mapping[int, int]], dict[str, Any]] = namespace["decode"]
    return decode


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
