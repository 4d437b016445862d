"""The agent's fast encoder against the reference (the contract's pydantic model): for any
reading, valid or not, the same bytes or the same refusal - the fast route only accepts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.daemon.agent import telemetry
from fleet.drivers.readings import Battery, Location, Reading, State, Status

# Values a driver bug could put anywhere: in and out of every range, NaN, inf, the wrong type.
_NUMBERS = st.one_of(
    st.none(),
    st.floats(-1e3, 1e3),
    st.floats(-2e7, 2e7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 100),
    st.integers(-70_000, 70_000),
    st.booleans(),
)
_TEXT = st.one_of(
    st.none(),
    st.sampled_from(["1.3.9", "", "x" * 33, '1"2', "a\\b", "C01061400098,C01061400117", "a,,b"]),
    st.text(max_size=40),
)
_STATE = st.one_of(st.none(), st.sampled_from(list(State)), st.sampled_from(["riding", "bogus"]))


def _group(cls: type, **special: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.builds(
        cls,
        **{
            f.name: special.get(f.name, _TEXT if f.name in ("firmware", "pack_ids") else _NUMBERS)
            for f in fields(cls)
        },
    )


_READINGS = st.builds(
    Reading,
    device=st.one_of(st.sampled_from(["sw-0001", "hh-7", "sw 03", "", "-x", "a" * 65]), st.text()),
    ts_ms=st.one_of(
        st.integers(-(10**3), 10**13),
        st.integers(9_223_286_390_000, 9_223_286_410_000),  # around the end of the range
        st.just(1795986000123),
        st.floats(0, 1e12),
    ),
    battery=st.one_of(st.none(), _group(Battery), st.just(Battery())),
    location=st.one_of(st.none(), _group(Location)),
    status=st.one_of(st.none(), _group(Status, state=_STATE), st.just(Status())),
)


def _both(reading: Reading, seq: int) -> tuple[bytes | str, bytes | str]:
    def run(encode: Callable[[Reading, int], bytes]) -> bytes | str:
        try:
            return encode(reading, seq)
        except ValueError as exc:
            return f"refused: {exc}"

    return run(telemetry.encode), run(telemetry.reference)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_READINGS, st.one_of(st.integers(0, 2**63 - 1), st.integers(-5, 5), st.just(2**63)))
def test_the_fast_route_writes_what_the_reference_writes(reading, seq):
    fast, ref = _both(reading, seq)
    assert fast == ref


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        Reading,
        device=st.sampled_from(["sw-0001", "seg-12.a_b"]),
        ts_ms=st.integers(0, 9_224_286_399_999),
        battery=_group(
            Battery,
            **{
                f.name: st.one_of(st.none(), st.floats(0, 10))
                for f in fields(Battery)
                if f.name not in ("charging", "pack_ids")
            },
        ),
        status=_group(Status, state=_STATE, firmware=st.sampled_from([None, "1.3.9"])),
    ),
    st.integers(0, 2**63 - 1),
)
def test_valid_readings_take_the_fast_route(reading, seq):
    # Mostly valid readings: the fast route must be the one taking them (else it saves nothing).
    fast = telemetry._fast(reading, seq)
    try:
        ref = telemetry.reference(reading, seq)
    except ValueError:
        assert fast is None
        return
    assert fast is None or fast == ref


def test_the_scooters_readings_go_the_fast_route():
    reading = Reading(
        "sw-0001",
        1795986000123,
        battery=Battery(pct=86.0, voltage_v=38.47, current_a=-3.2, temp_c=27.0, charging=False,
                        health_pct=96.0, cell_spread_v=0.009),
        status=Status(state=State.RIDING, odometer_km=1234.567, range_km=21.0, error_code=0,
                      locked=False, firmware="1.3.9", speed_kmh=12.3),
    )  # fmt: skip
    fast = telemetry._fast(reading, 7)
    assert fast is not None
    assert fast == telemetry.reference(reading, 7)
    # the cached second of the timestamp is not reused for the next second
    later = Reading(reading.device, reading.ts_ms + 1000, battery=reading.battery)
    assert telemetry._fast(later, 8) == telemetry.reference(later, 8)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 100.5, True])
def test_a_bad_value_is_refused_with_the_references_words(bad):
    reading = Reading("sw-0001", 1795986000123, battery=Battery(pct=bad))
    assert telemetry._fast(reading, 1) is None
    with pytest.raises(ValueError, match=r"battery\.pct"):
        telemetry.encode(reading, 1)


@pytest.mark.parametrize(
    "ts_ms", [0, -1, 9_223_286_399_999, 9_223_286_400_000, 9_224_286_399_999, 10**13]
)
def test_the_ends_of_the_timestamp_range_are_the_references(ts_ms):
    # 2262-04-11T00:00:00Z (InfluxDB's end) is refused, the millisecond before it is not.
    reading = Reading("sw-0001", ts_ms, battery=Battery(pct=50.0))
    assert _both(reading, 1)[0] == _both(reading, 1)[1]
    assert (telemetry._fast(reading, 1) is None) == (ts_ms < 0 or ts_ms >= 9_223_286_400_000)


@pytest.mark.parametrize("seq", [0, -1, 2**63 - 1, 2**63])
def test_the_ends_of_the_seq_range_are_the_references(seq):
    reading = Reading("sw-0001", 1795986000123, battery=Battery(pct=50.0))
    fast, ref = _both(reading, seq)
    assert fast == ref
    assert (telemetry._fast(reading, seq) is None) == (seq < 0 or seq >= 2**63)


@pytest.mark.parametrize("ts_ms", [2**63, 10**20, -(10**20)])
def test_a_timestamp_past_any_date_is_a_refusal_not_a_crash(ts_ms):
    # datetime itself overflows here: the agent catches ValueError only, so anything else
    # would stop the driver that produced the reading.
    reading = Reading("sw-0001", ts_ms, battery=Battery(pct=50.0))
    with pytest.raises(ValueError, match=rf"ts_ms {ts_ms} is outside 1970-01-01\.\.2262-04-11"):
        telemetry.encode(reading, 1)
