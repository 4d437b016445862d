"""GATT Battery Service: pure decoders, and the driver against an emulated handheld via backend=."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bleak.backends.scanner import BaseBleakScanner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet.drivers.ble.battery import BleBattery
from fleet.drivers.ble.config import BleBatteryConfig
from fleet.drivers.ble.decode import BATTERY_LEVEL, decode_battery_level, decode_text
from fleet.drivers.readings import Battery, Status
from tests.drivers.emulators.ble import BleAir, handheld
from tests.drivers.emulators.recording import RecordingSink, until

MAC = "C0:FF:EE:00:00:07"
DEVICE = "hh-07"


@pytest.mark.parametrize(
    ("data", "pct"),
    [
        (b"\x57", 87),
        (b"\x00", 0),
        (b"\x64", 100),
        (b"\x65", None),
        (b"\xff", None),
        (b"", None),
        (b"\x57\x00", None),
    ],
)
def test_battery_level_decoding(data, pct):
    assert decode_battery_level(data) == pct


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"2.4.1", "2.4.1"),
        (b"2.4.1\x00\x00", "2.4.1"),
        (b"  TC52 \r\n", "TC52"),
        (b"", None),
        (b"\x00abc", None),
        (b"\xff\xfe1.0", "\ufffd\ufffd1.0"),
    ],
)
def test_device_information_text(data, text):
    assert decode_text(data) == text


@given(st.binary(max_size=100))
def test_fuzz_decoders_never_raise(data):
    pct = decode_battery_level(data)
    assert pct is None or 0 <= pct <= 100
    text = decode_text(data)
    assert text is None or len(text) <= 64


# --- the driver -----------------------------------------------------------------------------


def config(**kw: Any) -> BleBatteryConfig:
    base: dict[str, Any] = {
        "device": DEVICE,
        "address": MAC,
        "poll_interval_s": 0.05,
        "scan_timeout_s": 0.1,
        "connect_timeout_s": 1.0,
        "offline_after_scans": 2,
        "reconnect_backoff_initial_s": 0.05,
        "reconnect_backoff_max_s": 0.4,
    }
    return BleBatteryConfig(**{**base, **kw})


@contextlib.asynccontextmanager
async def running(air: BleAir, sink: RecordingSink, **kw: Any) -> AsyncIterator[BleBattery]:
    driver = BleBattery(
        config(**kw),
        clock=lambda: 7,
        scanner_backend=air.scanner_backend,
        client_backend=air.client_backend,
    )
    task = asyncio.create_task(driver.run(sink))
    try:
        async with air.beaconing():
            yield driver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not task.done() or task.cancelled(), "driver died"


def levels(sink: RecordingSink) -> list[float | None]:
    return [r.battery.pct for r in sink.readings if r.battery]


async def test_reads_level_and_firmware_then_follows_notifications():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC, level=87, firmware="2.4.1"))
    async with running(air, sink, poll_interval_s=30):
        await until(lambda: sink.readings)
        await until(lambda: phone.clients and phone.clients[0]._subscriptions)
        phone.notify(BATTERY_LEVEL, b"\x56")
        await until(lambda: 86 in levels(sink))
    first = sink.readings[0]
    assert (first.device, first.ts_ms) == (DEVICE, 7)
    assert first.battery == Battery(pct=87.0)
    assert first.status == Status(firmware="2.4.1")
    assert levels(sink) == [87, 86]
    assert sink.availability_log[0] == (DEVICE, True, "connected")


async def test_polls_when_the_device_does_not_notify():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC, level=50, notify=False))
    async with running(air, sink):
        await until(lambda: sink.readings)
        phone.set_value(BATTERY_LEVEL, b"\x31")
        await until(lambda: 49 in levels(sink))
    assert phone.connects == 1


async def test_use_notify_false_ignores_notifications():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC, level=50))
    async with running(air, sink, use_notify=False, poll_interval_s=30):
        await until(lambda: sink.readings)
        phone.notify(BATTERY_LEVEL, b"\x20")
        await asyncio.sleep(0)
    assert levels(sink) == [50]


async def test_out_of_range_level_is_refused_and_logged(caplog):
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC, level=200))
    async with running(air, sink, poll_interval_s=30) as driver:
        await until(lambda: driver.refused >= 1)
        phone.notify(BATTERY_LEVEL, b"\x64")
        await until(lambda: sink.readings)
    assert levels(sink) == [100]
    assert any("refused battery level c8" in r.getMessage() for r in caplog.records)


async def test_disconnect_goes_offline_and_reconnects_with_backoff():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC))
    async with running(air, sink, reconnect_backoff_initial_s=0.2):
        await until(lambda: sink.online(DEVICE) is True)
        phone.drop()
        await until(lambda: sink.online(DEVICE) is False)
        assert sink.availability_log[-1][2] == "disconnected"
        await until(
            lambda: phone.connects == 2 and sink.online(DEVICE) is True, message="no reconnect"
        )
        states = [online for _, online, _ in sink.availability_log]
    assert states == [True, False, True]
    gap = phone.connect_attempts[1] - phone.connect_attempts[0]
    assert gap >= 0.2


async def test_failing_connects_back_off_exponentially_up_to_the_cap():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC))
    phone.connectable = False
    async with running(
        air, sink, reconnect_backoff_initial_s=0.02, reconnect_backoff_max_s=0.16, scan_timeout_s=1
    ):
        await until(lambda: len(phone.connect_attempts) >= 6, within=10)
    gaps = [b - a for a, b in itertools.pairwise(phone.connect_attempts)]
    # each gap is at least its backoff (0.02, 0.04, 0.08, 0.16, 0.16): growing, then capped
    for gap, floor in zip(gaps, [0.02, 0.04, 0.08, 0.16, 0.16], strict=False):
        assert gap >= floor
    assert gaps[2] > gaps[0]
    assert sink.online(DEVICE) is False
    assert "connect failed" in sink.availability_log[0][2]


async def test_absent_device_goes_offline_after_n_scans_and_comes_back():
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC))
    phone.present = False
    async with running(air, sink, offline_after_scans=2):
        await until(lambda: sink.online(DEVICE) is False, within=5)
        assert sink.availability_log[-1][2] == "not found in 2 scans"
        assert phone.connect_attempts == []
        phone.present = True
        await until(lambda: sink.online(DEVICE) is True, within=5)
    assert sink.readings


async def test_device_without_battery_service_is_reported_not_crashed(caplog):
    air, sink = BleAir(), RecordingSink()
    phone = air.add(handheld(MAC))
    del phone.services["0000180f-0000-1000-8000-00805f9b34fb"]
    caplog.set_level(logging.WARNING)
    async with running(air, sink):
        await until(lambda: phone.connects >= 2)
    assert sink.readings == []
    assert sink.online(DEVICE) is False
    assert "0x2A19" in sink.availability_log[-1][2]


async def test_no_bluetooth_raises_for_the_agent_to_restart():
    class NoBluetooth(BaseBleakScanner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(None, None)

        async def start(self) -> None:
            raise FileNotFoundError(2, "No such file or directory")

        async def stop(self) -> None:
            pass

    sink = RecordingSink()
    driver = BleBattery(config(), scanner_backend=NoBluetooth)
    with pytest.raises(FileNotFoundError):
        await driver.run(sink)
    assert sink.online(DEVICE) is False


def test_config_validation():
    with pytest.raises(ValidationError, match="should match pattern"):
        BleBatteryConfig(device=DEVICE, address="not-a-mac")
    with pytest.raises(ValidationError, match="greater than 0"):
        BleBatteryConfig(device=DEVICE, address=MAC, poll_interval_s=0)
    assert BleBatteryConfig(device=DEVICE, address=MAC).use_notify is True
