"""The `segway_pt_battery` driver on its worker thread, with emulated packs on fake buses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from fleet.drivers.readings import Battery
from fleet.drivers.segway_pt.config import SegwayPtBatteryConfig
from fleet.drivers.segway_pt.driver import SegwayPtBattery
from tests.drivers.emulators.recording import RecordingSink, until
from tests.drivers.emulators.segway_pt import (
    EmulatedPack,
    FakeBus,
    FakeBuses,
    FakeMux,
    two_buses,
)

DEVICE = "pt-07"
SERIAL_B = "C01061400117"
PACK_B_GONE = "pack B does not answer on /dev/i2c-2 at 0x31 - is 12 V on BATTERY ENABLE?"


def config(**kw: Any) -> SegwayPtBatteryConfig:
    base: dict[str, Any] = {"device": DEVICE, "buses": [1, 2], "poll_interval_s": 0.02}
    base.update(kw)
    return SegwayPtBatteryConfig.model_validate(base)


def packs() -> tuple[EmulatedPack, EmulatedPack]:
    a = EmulatedPack.real()  # 25 %, 20.9-23.6 °C
    b = EmulatedPack.made(soc_pct=80, serial=SERIAL_B, sensors_c=(24.0, 31.5, 22.0, 23.0))
    return a, b


@contextlib.asynccontextmanager
async def running(driver: SegwayPtBattery, sink: RecordingSink) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(sink))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "the driver must only end when cancelled"


def battery(sink: RecordingSink, index: int = -1) -> Battery:
    got = sink.readings[index].battery
    assert got is not None
    return got


async def test_one_reading_per_poll_with_the_lower_charge_and_the_hotter_sensor() -> None:
    a, b = packs()
    buses = two_buses(a, b)
    sink = RecordingSink()
    driver = SegwayPtBattery(config(), clock=lambda: 1_700_000_000_000, open_bus=buses.open)
    async with running(driver, sink):
        await until(lambda: len(sink.readings) >= 3, message="3 readings")
    reading = sink.readings[0]
    assert (reading.device, reading.ts_ms) == (DEVICE, 1_700_000_000_000)
    assert reading.status is None
    assert reading.location is None
    got = battery(sink, 0)
    assert got.pct == 25.0
    assert got.temp_c == 31.5
    assert got.pack_ids == f"C01061400098,{SERIAL_B}"
    assert got.charging is False
    assert got.current_a == 0.0
    assert got.cell_spread_v == pytest.approx(5 * 8 / 1023)
    assert sink.availability_log[0] == (DEVICE, True, "both packs answering")
    assert driver.last_packs["B"].soc_pct == 80.0  # each pack's own values are kept
    assert buses.opened == ["/dev/i2c-1", "/dev/i2c-2"]  # opened once, kept open


async def test_a_pack_that_stops_answering_takes_the_pt_offline_and_nothing_is_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = packs()
    sink = RecordingSink()
    driver = SegwayPtBattery(config(), open_bus=two_buses(a, b).open)
    caplog.set_level(logging.DEBUG, logger="fleet.drivers.segway_pt")
    async with running(driver, sink):
        await until(lambda: sink.readings, message="a reading")
        b.answering = False  # its 12 V enable wire came off
        await until(lambda: sink.online(DEVICE) is False, message="offline")
        published, polls = len(sink.readings), driver.polls
        await until(lambda: driver.polls >= polls + 3, message="three more polls")
        # Pack A still answers: its values are logged, but no reading of the PT goes out.
        assert len(sink.readings) == published
        b.answering = True
        await until(lambda: sink.online(DEVICE) is True, message="online again")
        await until(lambda: len(sink.readings) > published, message="readings again")
    device, online, detail = sink.availability_log[1]
    assert (device, online) == (DEVICE, False)
    assert detail == f"{PACK_B_GONE} ([Errno 121] Remote I/O error)"
    assert f"{DEVICE}: offline: {PACK_B_GONE}" in caplog.text
    assert "pack A C01061400098 rev AH: soc 25 % (raw 0xff19)" in caplog.text
    assert [online for _, online, _ in sink.availability_log] == [True, False, True]


async def test_both_packs_silent_name_both_and_a_missing_bus_is_reopened() -> None:
    a, b = packs()
    buses = two_buses(a, b)
    buses.unplugged.add("/dev/i2c-1")  # the USB I²C adapter of pack A is not there yet
    a.answering = b.answering = False
    sink = RecordingSink()
    async with running(SegwayPtBattery(config(), open_bus=buses.open), sink):
        await until(lambda: sink.online(DEVICE) is False, message="offline")
        detail = sink.availability_log[-1][2]
        assert detail.startswith("cannot open /dev/i2c-1 for pack A: [Errno 2] No such file")
        assert f"; {PACK_B_GONE}" in detail
        buses.unplugged.clear()
        a.answering = b.answering = True
        await until(lambda: sink.readings, message="a reading after the replug")
    assert buses.opened.count("/dev/i2c-2") >= 2  # dropped after the failure, opened afresh


async def test_corrupt_replies_are_counted_and_the_values_stay_exact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = packs()
    a.noise_every, b.noise_every = 9, 11
    sink = RecordingSink()
    driver = SegwayPtBattery(config(), open_bus=two_buses(a, b).open)
    with caplog.at_level(logging.WARNING, logger="fleet.drivers.segway_pt"):
        async with running(driver, sink):
            await until(lambda: len(sink.readings) >= 5, message="5 readings")
    assert {(battery(sink, i).pct, battery(sink, i).temp_c) for i in range(5)} == {(25.0, 31.5)}
    assert driver.stats.bad_checksums > 20
    assert sink.online(DEVICE) is True
    assert "replies refused so far" in caplog.text  # counted in the log, rate-limited


async def test_a_pack_swapped_for_another_is_followed(caplog: pytest.LogCaptureFixture) -> None:
    a, b = packs()
    sink = RecordingSink()
    caplog.set_level(logging.INFO, logger="fleet.drivers.segway_pt")
    async with running(SegwayPtBattery(config(), open_bus=two_buses(a, b).open), sink):
        await until(lambda: sink.readings, message="a reading")
        b.set_identity("C01061400555", "AJ")
        await until(
            lambda: battery(sink).pack_ids == "C01061400098,C01061400555", message="the new pack"
        )
    assert f"{DEVICE}: pack B is {SERIAL_B} (revision AH)" in caplog.text
    assert f"{DEVICE}: pack B changed: {SERIAL_B} -> C01061400555 (revision AJ)" in caplog.text


async def test_two_packs_behind_a_multiplexer() -> None:
    a, b = packs()
    buses = FakeBuses()
    buses.add(FakeBus("/dev/i2c-pt", mux=FakeMux(0x70, {3: a, 4: b})))
    cfg = config(buses=None, bus="/dev/i2c-pt", mux_address=0x70, mux_channels=[3, 4])
    sink = RecordingSink()
    async with running(SegwayPtBattery(cfg, open_bus=buses.open), sink):
        await until(lambda: sink.readings, message="a reading")
    assert battery(sink).pack_ids == f"C01061400098,{SERIAL_B}"
    assert buses.opened == ["/dev/i2c-pt"]


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ({"buses": None}, "give buses (one bus per pack), or bus, mux_address and mux_channels"),
        ({"bus": 1}, "give either buses (one bus per pack) or bus, mux_address and"),
        ({"buses": [2, "/dev/i2c-2"]}, "they need two different buses"),
        ({"buses": [1]}, "buses"),
        ({"buses": [1, "i2c-2"]}, "String should match pattern"),
        (
            {"buses": None, "bus": 1, "mux_address": 0x70, "mux_channels": [2, 2]},
            "two different channels",
        ),
        (
            {"buses": None, "bus": 1, "mux_address": 0x70, "mux_channels": [0, 8]},
            "two different channels",
        ),
        (
            {"buses": None, "bus": 1, "mux_address": 0x31, "mux_channels": [0, 1]},
            "must differ from pack_address",
        ),
        ({"pack_address": 0x80}, "less than or equal to 119"),
        ({"checksum_retries": -1}, "greater than or equal to 0"),
        ({"wires": 2}, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses_a_wiring_that_cannot_work(keys: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        config(**keys)
