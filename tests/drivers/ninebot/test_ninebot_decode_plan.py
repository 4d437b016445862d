"""The planned register decode (fields.DecodePlan) against the table walk it replaced.

`table_walk` is the decode as it was before the plan: every field's meaning read
from its `Field` on every call. It stays here only as the reference: the plan must
give the same dict - the same keys, values and types (an int stays an int, a float
is rounded the same) and the same None - for any register bank, under every
model's scales and under arbitrary tables. And the bank's one-call absorb of a reply
against the word-by-word one it replaced.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.drivers.ninebot.fields import DecodePlan, Field, Kind, decode_fields, decode_plan
from fleet.drivers.ninebot.registers import (
    BMS_FIELDS,
    ESC_FIELDS,
    MODELS,
    RegisterBank,
    decode_bms,
    decode_esc,
    reading_from_words,
    to_reading,
)
from tests.drivers.emulators.ninebot import ScooterState


def _raw(field: Field, words: Mapping[int, int]) -> int | None:
    w = words.get(field.reg)
    if w is None:
        return None
    if field.kind is Kind.U16:
        return w
    if field.kind is Kind.I16:
        return w - 0x10000 if w & 0x8000 else w
    if field.kind is Kind.LO_BYTE:
        return w & 0xFF
    if field.kind is Kind.HI_BYTE:
        return w >> 8
    hi = words.get(field.reg + 1)
    return None if hi is None else w | (hi << 16)


def table_walk(
    fields: tuple[Field, ...], words: Mapping[int, int], scales: Mapping[str, float]
) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {}
    for f in fields:
        raw = _raw(f, words)
        if raw is None or (f.unavailable is not None and raw == f.unavailable):
            out[f.name] = None
            continue
        scale = scales.get(f.scale, 1.0) if isinstance(f.scale, str) else f.scale
        value: float | int = raw if scale == 1.0 and f.offset == 0 else raw * scale + f.offset
        if isinstance(value, float):
            value = round(value, 6)
        if f.valid is not None and not f.valid[0] <= value <= f.valid[1]:
            out[f.name] = None
            continue
        out[f.name] = value
    return out


def same(a: Mapping[str, float | int | None], b: Mapping[str, float | int | None]) -> bool:
    """Equal values of equal types: 38 and 38.0 are not the same decode."""
    return list(a) == list(b) and all(type(a[k]) is type(b[k]) and a[k] == b[k] for k in a)


# Register banks around the tables' registers: any word, some missing (a short reply).
_REGS = sorted({f.reg for f in (*ESC_FIELDS, *BMS_FIELDS)} | {0xB8, 0x36, 0x50})
_WORD = st.one_of(
    st.integers(0, 0xFFFF),
    st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF, 0xFF00, 0x00FF, 100, 101, 6000, 6001]),
)
banks = st.dictionaries(st.sampled_from(_REGS), _WORD, max_size=len(_REGS))


@settings(max_examples=200, deadline=None)
@given(words=banks, model=st.sampled_from(sorted(MODELS)))
def test_planned_decode_equals_the_table_walk_for_the_real_tables(
    words: dict[int, int], model: str
) -> None:
    scales = MODELS[model].scales
    for fields in (ESC_FIELDS, BMS_FIELDS):
        planned = decode_fields(fields, words, scales)
        assert same(planned, table_walk(fields, words, scales)), (fields[0].name, words)


# The ESC's and the BMS's banks apart (each unit has its own): the same strategy, each sparse.
@settings(max_examples=250, deadline=None)
@given(esc=banks, bms=banks, model=st.sampled_from(sorted(MODELS)))
def test_the_fused_reading_is_the_composed_one(
    esc: dict[int, int], bms: dict[int, int], model: str
) -> None:
    """`reading_from_words` against `to_reading(decode_esc, decode_bms)`: the same reading,
    field for field and type for type (38 and 38.0 would be written apart), or both None."""
    m = MODELS[model]
    fused = reading_from_words("d", 1, esc, bms, m)
    composed = to_reading("d", 1, decode_esc(esc, m), decode_bms(bms, m))
    assert repr(fused) == repr(composed), (esc, bms)
    assert fused == composed


_SCALE = st.one_of(
    st.sampled_from([1.0, 1, 0.1, 0.01, 0.001, -0.01, 2, "speed", "bms_current", "missing"]),
    st.floats(-10, 10, allow_nan=False),
)
_OFFSET = st.one_of(st.sampled_from([0, 0.0, -20, 0.5]), st.floats(-100, 100, allow_nan=False))
_VALID = st.one_of(
    st.none(),
    st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False)),
)
field_tables = st.lists(
    st.builds(
        Field,
        name=st.text("abcdef", min_size=1, max_size=4),
        reg=st.integers(0, 8),
        kind=st.sampled_from(list(Kind)),
        scale=_SCALE,
        offset=_OFFSET,
        unavailable=st.one_of(st.none(), st.sampled_from([0, 0xFFFF, 0xFF, 0x7FFF, -1])),
        valid=_VALID,
    ),
    max_size=12,
).map(tuple)


@settings(max_examples=120, deadline=None)
@given(
    fields=field_tables,
    words=st.dictionaries(st.integers(0, 9), _WORD),
    scales=st.sampled_from([m.scales for m in MODELS.values()] + [{}, {"speed": 2}]),
)
def test_planned_decode_equals_the_table_walk_for_any_table(
    fields: tuple[Field, ...], words: dict[int, int], scales: dict[str, float]
) -> None:
    # Duplicate names: the later field wins in both, as in a dict literal.
    assert same(DecodePlan(fields, scales).decode(words), table_walk(fields, words, scales))


def test_a_plan_is_made_once_per_table_and_scales() -> None:
    scales = MODELS["es"].scales
    first = decode_plan(BMS_FIELDS, scales)
    assert decode_plan(BMS_FIELDS, scales) is first
    assert decode_plan(BMS_FIELDS, dict(scales)) is first  # equal scales, equal plan
    assert decode_plan(BMS_FIELDS, MODELS["m365"].scales) is not decode_plan(ESC_FIELDS, scales)
    other = decode_plan(ESC_FIELDS, {"speed": 0.5, "bms_current": -0.01})
    assert other is not decode_plan(ESC_FIELDS, MODELS["es"].scales)


def test_planned_decode_of_the_emulators_state() -> None:
    """A fixed point besides the property: the BMS block of the emulator's default state."""
    bms = decode_bms(ScooterState(model="es").bms_words(), MODELS["es"])
    assert (bms.pct, bms.voltage_v, bms.current_a, bms.health_pct) == (86.0, 38.47, -3.2, 96.0)
    assert len(bms.cells_mv) == 10


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 255), payload=st.binary(max_size=80), as_bytearray=st.booleans())
def test_absorb_stores_the_little_endian_words_of_a_reply(
    start: int, payload: bytes, as_bytearray: bool
) -> None:
    bank = RegisterBank()
    bank.words[start - 1] = 7  # words before the reply are kept
    bank.absorb(start, bytearray(payload) if as_bytearray else payload)
    expected = {
        start + i: payload[2 * i] | payload[2 * i + 1] << 8 for i in range(len(payload) // 2)
    }
    assert bank.words == {start - 1: 7, **expected}


def test_the_power_of_ten_division_is_the_rounded_product_for_every_word() -> None:
    """The plan divides by 10**k where the table walk multiplies by 1e-k and rounds to 6
    places: the same double (sign of zero included) for every 16-bit word, signed or not,
    and for 32-bit values across their range."""
    scales = (0.1, 0.01, 0.001, 1e-6, -0.01, -0.001)
    kinds = (Kind.U16, Kind.I16, Kind.U32)
    fields = tuple(Field(f"f{i}", 0, kinds[i % 3], scale=s) for i, s in enumerate(scales * 3))
    decode = DecodePlan(fields, {}).decode
    highs = [0, 1, 0x7FFF, 0x8000, 0xFFFF, *range(3, 0xFFFF, 4099)]
    for word in range(0x10000):
        high = highs[word % len(highs)]
        raws = (word, word - 0x10000 if word & 0x8000 else word, word | high << 16)
        got = decode({0: word, 1: high})
        want = {f.name: round(raws[i % 3] * f.scale + 0.0, 6) for i, f in enumerate(fields)}  # type: ignore[operator]
        assert repr(got) == repr(want), word
