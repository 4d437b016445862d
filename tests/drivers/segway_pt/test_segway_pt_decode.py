"""The register decoders and the PT's reading from two packs (pure: no bus)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.drivers.readings import Reading
from fleet.drivers.segway_pt import registers as reg
from fleet.drivers.segway_pt.pack import PackValues, vehicle_reading
from fleet.drivers.segway_pt.triplet import parse_triplet
from tests.drivers.emulators.segway_pt import (
    IDENTITY,
    REAL_AVG_TEMP_C,
    REAL_IDENTITY_DUMP,
    REAL_SENSORS_C,
    REAL_SENSORS_DUMP,
    REAL_SINGLES,
    SENSORS,
    adc_for,
    parse_dump,
)


def real_identity() -> dict[int, int]:
    return dict(
        reg.identity_entry(parse_triplet(IDENTITY, d).word) for d in parse_dump(REAL_IDENTITY_DUMP)
    )


def test_the_real_identity_gives_serial_and_revision() -> None:
    chars = real_identity()
    assert len(chars) == 38
    assert reg.serial_number(chars) == "C01061400098"
    assert reg.revision(chars) == "AH"


def test_an_identity_with_a_gap_or_a_control_byte_has_no_serial() -> None:
    chars = real_identity()
    gap = {i: c for i, c in chars.items() if i != 0x18}
    assert reg.serial_number(gap) is None
    assert reg.revision(gap) == "AH"
    assert reg.serial_number({**chars, 0x20: 0x00}) is None
    assert reg.revision({**chars, 0x0C: 0x20}) is None  # a space is no serial character


def test_the_real_state_of_charge_current_and_temperatures() -> None:
    soc = parse_triplet(0x1D, REAL_SINGLES[0x1D]).word
    assert soc == 0xFF19
    assert reg.soc_pct(soc) == 25.0
    assert reg.charge_current_a(parse_triplet(0xD4, REAL_SINGLES[0xD4]).word) == 0.0
    avg = parse_triplet(0x95, REAL_SINGLES[0x95]).word
    assert reg.temperature_c(avg) == REAL_AVG_TEMP_C
    entries = [
        reg.sensor_entry(parse_triplet(SENSORS, d).word) for d in parse_dump(REAL_SENSORS_DUMP)
    ]
    assert [i for i, _ in entries] == [0, 1, 2, 3]  # the index nibble
    assert tuple(reg.temperature_c(r) for _, r in entries) == REAL_SENSORS_C


@pytest.mark.parametrize(
    ("raw", "celsius"),
    [(0x000, 0.0), (0x7FF, 127.9375), (0xFF0, -1.0), (0x800, -128.0), (0xF60, -10.0)],
)
def test_temperatures_are_12_bit_twos_complement_sixteenths(raw: int, celsius: float) -> None:
    assert reg.temperature_c(raw) == celsius


@pytest.mark.parametrize(
    ("word", "pct"),
    [(0xFF00, 0.0), (0xFF64, 100.0), (0x0032, 50.0), (0xFF65, None), (0xFFFF, None)],
)
def test_a_state_of_charge_above_100_is_no_percentage(word: int, pct: float | None) -> None:
    assert reg.soc_pct(word) == pct


def test_charge_current_is_signed_and_scaled_as_the_notes_say() -> None:
    assert reg.charge_current_a(0x0001) == pytest.approx(7.8125)
    assert reg.charge_current_a(0xFFFF) == pytest.approx(-7.8125)


def test_cell_entries_carry_a_5_bit_group_and_keep_the_raw_bits() -> None:
    group, raw = reg.cell_entry(22 << 11 | 0x5D9)
    assert (group, raw) == (22, 0x5D9)  # bit 10 kept raw, though the 10-bit rule ignores it
    assert reg.cell_volts(raw) == pytest.approx(0x1D9 * 8 / 1023)
    assert reg.cell_volts(0x3FF) is None  # full scale: the notes' tool calls it invalid


@given(st.integers(0, 0xFFFF))
def test_decoders_take_any_word(word: int) -> None:
    pct = reg.soc_pct(word)
    assert pct is None or 0 <= pct <= 100
    assert -128 <= reg.temperature_c(word) < 128
    group, raw = reg.cell_entry(word)
    assert 0 <= group < 32
    assert 0 <= raw < 0x800
    volts = reg.cell_volts(raw)
    assert volts is None or 0 <= volts < 8


def pack(
    name: str,
    *,
    soc: int = 0xFF19,
    current: int = 0,
    temps: tuple[int, ...] = (0x150,) * 5,
    cells: list[float] | None = None,
    serial: str | None = "C01061400098",
) -> PackValues:
    volts = cells or [3.7] * 23
    return PackValues(
        name=name,
        soc_raw=soc,
        current_raw=current,
        avg_temp_raw=temps[0],
        sensor_raw=temps[1:],
        cell_raw=tuple(adc_for(v) for v in volts),
        serial=serial,
        revision="AH",
    )


def battery_of(reading: Reading):
    assert reading.battery is not None
    return reading.battery


def test_the_pt_reading_is_never_the_optimistic_pack() -> None:
    a = pack("A", soc=0xFF19, temps=(0x150, 0x160, 0x170, 0x180, 0x1E0), cells=[3.7] * 22 + [3.8])
    b = pack(
        "B",
        soc=0xFF50,
        temps=(0x150, 0x200, 0x150, 0x150, 0x150),
        cells=[3.7] * 22 + [3.9],
        serial="C01061400117",
    )
    for order in ([a, b], [b, a]):
        battery = battery_of(vehicle_reading("pt-01", 5, order))
        assert battery.pct == 25.0  # the lower pack
        assert battery.temp_c == 32.0  # pack B's sensor 0, the hottest of all ten readings
        assert battery.cell_spread_v == pytest.approx((adc_for(3.9) - adc_for(3.7)) * 8 / 1023)
        assert battery.charging is False
        assert battery.voltage_v is None  # the scale is unsettled: not published
    assert battery_of(vehicle_reading("pt-01", 5, [a, b])).pack_ids == "C01061400098,C01061400117"
    assert battery_of(vehicle_reading("pt-01", 5, [b, a])).pack_ids == "C01061400117,C01061400098"


def test_one_doubtful_state_of_charge_leaves_the_charge_unknown() -> None:
    reading = vehicle_reading("pt-01", 5, [pack("A", soc=0xFF19), pack("B", soc=0xFFC8)])
    assert battery_of(reading).pct is None  # 200 % from B: pack A's 25 % might not be the lower
    assert battery_of(reading).temp_c is not None


def test_charging_from_either_pack_and_the_currents_add_up() -> None:
    battery = battery_of(
        vehicle_reading("pt-01", 5, [pack("A", current=0x0010), pack("B", current=0)])
    )
    assert battery.charging is True
    assert battery.current_a == pytest.approx(16 / 0.128)
    huge = battery_of(vehicle_reading("pt-01", 5, [pack("A", current=0x7FFF), pack("B")]))
    assert huge.current_a is None
    assert huge.charging is True


def test_an_invalid_cell_group_or_an_unknown_serial() -> None:
    broken = pack("B", serial=None)
    broken = replace(broken, cell_raw=(0x3FF, *broken.cell_raw[1:]))
    assert broken.spread_v is None
    battery = battery_of(vehicle_reading("pt-01", 5, [pack("A"), broken]))
    assert battery.cell_spread_v is None  # a group unread could be the outlier
    assert battery.pack_ids == "C01061400098,?"
    assert "pack B ? rev AH" in broken.describe()
    assert "(22/23 valid)" in broken.describe()
