"""The hot path's shortcuts against what they replace (issue 14, squeeze): the slot builders
against the dataclasses' own __init__, and the epoch-seconds timestamp against parse_ts."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from fleet.daemon.board.model import Latest
from fleet.daemon.spool import SeqRow
from fleet.daemon.wire import DecodedReading, fast
from fleet.daemon.wire.envelope import parse_ts, to_ms
from fleet.drivers.readings import Battery, Location, State, Status

BATTERY = Battery(55.5, 48.1, -3.2, 25.0, False, 97.0, None, "C01,C02")
LOCATION = Location(41.27, -72.95, 5.0, 8.2, 180.0)
STATUS = Status(State.RIDING, 1234.5, 21.0, 0, False, -61, "1.3.9", 8.4)


def reference_ms(value: object) -> int | None:
    try:
        return to_ms(parse_ts(value))
    except PydanticCustomError:
        return None


@pytest.mark.parametrize(
    "instance",
    [
        BATTERY,
        Battery(),
        LOCATION,
        STATUS,
        DecodedReading("hq", "segway", "sw-03", 7, 1795986000123, BATTERY, None, STATUS, "t"),
        Latest(1, 2, 50.0, True, -1.0, 20.0, "riding", 0, 10.0, 100.0, 41.0, -72.0),
        SeqRow("sw-03", "hq", "segway", 42, b"\x01\x02"),
    ],
    ids=lambda i: type(i).__name__,
)
def test_a_built_instance_is_the_one_init_makes(instance: object) -> None:
    values = [getattr(instance, f.name) for f in dataclasses.fields(instance)]  # type: ignore[arg-type]
    built = fast.builder(type(instance))(*values)
    assert type(built) is type(instance)
    assert built == instance
    assert repr(built) == repr(instance)
    assert hash(built) == hash(instance)
    assert pickle.loads(pickle.dumps(built)) == instance
    first = dataclasses.fields(instance)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, first, None)


def test_a_group_built_from_its_struct_keeps_every_value_and_type() -> None:
    for group, instance in (("battery", BATTERY), ("location", LOCATION), ("status", STATUS)):
        struct = fast._GROUP_STRUCTS[group](*dataclasses.astuple(instance))
        built = fast.builder(type(instance), from_attributes=True)(struct)
        assert repr(built) == repr(instance)


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    x: int

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    x: int


@dataclasses.dataclass(slots=True)
class _Mutable:
    x: int


@dataclasses.dataclass(frozen=True, slots=True)
class _NotInInit:
    x: int
    y: int = dataclasses.field(init=False, default=0)


@pytest.mark.parametrize("cls", [_Checked, _NoSlots, _Mutable, _NotInInit, tuple])
def test_a_class_whose_init_does_more_is_refused(cls: type) -> None:
    # Skipping such an __init__ would skip a check or leave a field unset: refused at import.
    with pytest.raises(TypeError):
        fast.builder(cls)


_CORNERS = [
    0,
    0.0,
    -0.0,
    1e-7,
    0.0005,
    0.0015,
    0.0004995,
    0.9999995,
    0.9999994,
    1795986000.1235,
    1795986000.9999996,
    fast._SECONDS_END - 1e-6,
    fast._SECONDS_END - 0.0005,
    fast._SECONDS_END,
    fast._SECONDS_END - 1,
    9999999999.9999,
    1e10,
    -1e-9,
    -1,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    2**70,
    "2026-11-29T21:00:00.123Z",
    "1970-01-01T00:00:00+01:00",
]


@pytest.mark.parametrize("value", _CORNERS, ids=repr)
def test_epoch_seconds_give_parse_ts_s_milliseconds_at_the_corners(value: object) -> None:
    assert fast._ts_ms(value) == reference_ms(value)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=-1, max_value=1.1e10),
        st.integers(min_value=-10, max_value=2 * 10**10),
        # The half-way cases of the rounding to microseconds: a whole microsecond and a half,
        # and the floats just either side of it.
        st.builds(
            lambda s, us, side: math.nextafter(s + (us + 0.5) / 1e6, side),
            st.integers(min_value=0, max_value=2**33),
            st.integers(min_value=0, max_value=999_999),
            st.sampled_from([0.0, math.inf]),
        ),
        st.builds(lambda s, us: s + (us + 0.5) / 1e6, st.integers(0, 2**33), st.integers(0, 10**6)),
    )
)
@example(1795986000.0005)
def test_epoch_seconds_give_parse_ts_s_milliseconds(value: float) -> None:
    assert fast._ts_ms(value) == reference_ms(value)
