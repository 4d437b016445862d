"""BTHome v2: decoder on the reference vectors, fuzzing, and the driver through bleak's backend hook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bleak.backends.scanner import BaseBleakScanner
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet.drivers.ble.bthome import BTHome
from fleet.drivers.ble.config import BTHomeConfig
from fleet.drivers.ble.decode import BTHOME_SERVICE_DATA, decode_bthome
from fleet.drivers.readings import Battery
from tests.drivers.emulators.ble import BleAir
from tests.drivers.emulators.recording import RecordingSink, until

MAC = "A4:C1:38:8D:18:B2"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")

# protocols.md §3.2
DIY_SENSOR_ADVERT = bytes.fromhex("0201060B094449592D73656E736F720A16D2FC4002C40903BF13")
HANDHELD_ADVERT = bytes.fromhex("0201060C16D2FC40015D0CA40D45F600")


def encrypted(payload: bytes, mac: str = MAC, key: bytes = KEY, counter: int = 1) -> bytes:
    """BTHome v2 encryption (bthome.io/format): AES-CCM, 4-byte MIC, nonce MAC|D2FC|info|counter."""
    info = b"\x41"
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + b"\xd2\xfc" + info + count
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, payload, None)
    return info + sealed[:-4] + count + sealed[-4:]


@pytest.mark.parametrize(
    ("payload_hex", "battery"),
    [
        ("4002c40903bf13", Battery(temp_c=25.0)),  # bthome.io example; humidity is not ours
        ("4000090115025d0903b718", Battery(pct=21.0, temp_c=23.97)),
        ("40000901 5d 025d09 03b718".replace(" ", ""), Battery(pct=93.0, temp_c=23.97)),
        ("400c020c", Battery(voltage_v=3.074)),
        ("404a0c02", Battery(voltage_v=52.4)),
        ("404a020c015d", Battery(pct=93.0)),  # 307.4 V is outside the contract: left out
        ("40015d0ca40d45f600", Battery(pct=93.0, voltage_v=3.492, temp_c=24.6)),
        ("40010016 01".replace(" ", ""), Battery(pct=0.0, charging=True)),
        ("405dc8fe", Battery(current_a=-0.312)),
    ],
)
def test_reference_payloads_decode(payload_hex, battery):
    advert = decode_bthome(bytes.fromhex(payload_hex), MAC, rssi=-61)
    assert advert.battery == battery
    assert advert.rssi_dbm == -61
    assert not advert.encrypted


def test_payload_without_battery_objects_gives_no_battery():
    assert decode_bthome(bytes.fromhex("4003bf13"), MAC).battery is None  # humidity only


def test_encrypted_payload_with_the_right_key_decodes():
    advert = decode_bthome(encrypted(bytes.fromhex("015d0ca40d")), MAC, bindkey=KEY)
    assert advert.encrypted
    assert not advert.undecryptable
    assert advert.battery == Battery(pct=93.0, voltage_v=3.492)


@pytest.mark.parametrize("key", [None, bytes(16)])
def test_encrypted_payload_without_the_right_key_gives_nothing(key):
    advert = decode_bthome(encrypted(bytes.fromhex("015d")), MAC, bindkey=key)
    assert advert.undecryptable
    assert advert.battery is None


def test_plaintext_when_a_key_is_configured_is_refused():
    advert = decode_bthome(bytes.fromhex("40015d"), MAC, bindkey=KEY)
    assert advert.downgraded
    assert advert.battery is None


def test_a_payload_cut_short_keeps_the_values_before_and_says_why():
    advert = decode_bthome(bytes.fromhex("40015d0ca4"), MAC)
    assert advert.battery == Battery(pct=93.0)
    assert advert.problem == "object 0x0C at byte 2 of the objects: 2 value bytes needed, 1 left"


@pytest.mark.parametrize(
    ("payload_hex", "why"),
    [
        ("", "empty service data"),
        ("60015d", "BTHome version 3, only version 2 is decoded"),
        ("20015d", "BTHome version 1, only version 2 is decoded"),  # v1 lives on 0x181C/0x181E
    ],
)
def test_what_is_not_bthome_v2_gives_nothing_and_the_reason(payload_hex, why):
    advert = decode_bthome(bytes.fromhex(payload_hex), MAC)
    assert (advert.battery, advert.undecryptable, advert.downgraded) == (None, False, False)
    assert advert.problem is not None
    assert why in advert.problem


def test_a_clean_payload_has_no_problem():
    assert decode_bthome(bytes.fromhex("40015d"), MAC).problem is None
    assert decode_bthome(encrypted(bytes.fromhex("015d")), MAC, bindkey=KEY).problem is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([None, KEY]))
def test_fuzz_any_payload_never_raises(payload, key):
    advert = decode_bthome(payload, MAC, bindkey=key)
    if advert.battery is not None and advert.battery.pct is not None:
        assert 0 <= advert.battery.pct <= 100


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=30))
def test_fuzz_v2_plain_objects_never_raise(body):
    decode_bthome(b"\x40" + body, MAC)


# --- the driver through bleak's backend hook ------------------------------------------------


@contextlib.asynccontextmanager
async def running(air: BleAir, sink: RecordingSink, **cfg: Any) -> AsyncIterator[BTHome]:
    config = BTHomeConfig(device="hh-11", address=MAC, **{"min_interval_s": 0, **cfg})
    driver = BTHome(config, clock=lambda: 42, scanner_backend=air.scanner_backend)
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: air.scanners or task.done(), message="scanner never started")
        yield driver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_raw_advert_becomes_a_battery_reading():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink):
        air.advertise_raw(MAC, HANDHELD_ADVERT, rssi=-70)
        await until(lambda: sink.readings)
    (r,) = sink.readings
    assert (r.device, r.ts_ms) == ("hh-11", 42)
    assert r.battery == Battery(pct=93.0, voltage_v=3.492, temp_c=24.6)
    assert r.status is not None
    assert r.status.rssi_dbm == -70
    assert sink.availability_log == [("hh-11", True, "advertising")]
    assert sink.adverts == 1


async def test_other_devices_feed_the_watchdog_but_not_the_readings():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink):
        air.advertise_raw("11:22:33:44:55:66", HANDHELD_ADVERT)
        air.advertise_raw(MAC, DIY_SENSOR_ADVERT)  # our device, temperature only
        air.advertise(MAC, local_name="no service data")
        await until(lambda: sink.adverts == 3)
        await until(lambda: sink.readings)
    assert [r.battery for r in sink.readings] == [Battery(temp_c=25.0)]


async def test_silence_goes_offline_and_an_advert_brings_it_back():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink, offline_after_s=0.2):
        air.advertise_raw(MAC, HANDHELD_ADVERT)
        await until(lambda: sink.online("hh-11") is True)
        await until(lambda: sink.online("hh-11") is False, message="never offline")
        assert "no advert for 0.2 s" in sink.availability_log[-1][2]
        air.advertise_raw(MAC, HANDHELD_ADVERT)
        await until(lambda: sink.online("hh-11") is True, message="never back online")


async def test_a_device_never_heard_goes_offline():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink, offline_after_s=0.1):
        await until(lambda: sink.online("hh-11") is False)


async def test_min_interval_limits_readings():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink, min_interval_s=30):
        for _ in range(5):
            air.advertise_raw(MAC, HANDHELD_ADVERT)
        await until(lambda: sink.readings)
        await asyncio.sleep(0)  # let any wrongly admitted reading land before counting
    assert len(sink.readings) == 1


async def test_encrypted_device_with_its_key():
    air, sink = BleAir(), RecordingSink()
    payload = encrypted(bytes.fromhex("015d0ca40d"))
    async with running(air, sink, bind_key=KEY.hex()):
        air.advertise(MAC, service_data={BTHOME_SERVICE_DATA: payload})
        await until(lambda: sink.readings)
    assert sink.readings[0].battery == Battery(pct=93.0, voltage_v=3.492)


async def test_encrypted_device_without_a_key_is_offline_with_the_reason(caplog):
    air, sink = BleAir(), RecordingSink()
    payload = encrypted(bytes.fromhex("015d"))
    async with running(air, sink):
        for _ in range(3):
            air.advertise(MAC, service_data={BTHOME_SERVICE_DATA: payload})
        await until(lambda: sink.online("hh-11") is False)
    assert sink.readings == []
    assert sink.availability_log == [
        ("hh-11", False, "encrypted BTHome adverts, no bind_key configured")
    ]
    warnings = [
        r
        for r in caplog.records
        if r.name == "fleet.drivers.ble.bthome" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1  # said once, not once per advert


async def test_a_garbled_advert_is_counted_said_once_and_its_good_part_kept(caplog):
    air, sink = BleAir(), RecordingSink()
    garbled = bytes.fromhex("40015d ff00".replace(" ", ""))  # battery, then an unknown object
    async with running(air, sink) as driver:
        for _ in range(3):
            air.advertise(MAC, service_data={BTHOME_SERVICE_DATA: garbled})
        await until(lambda: len(sink.readings) == 3)
        assert (driver.malformed, driver.refused, driver.readings) == (3, 0, 3)
    assert {r.battery for r in sink.readings} == {Battery(pct=93.0)}
    assert sink.availability_log == [("hh-11", True, "advertising")]
    (warning,) = [
        r
        for r in caplog.records
        if r.name == "fleet.drivers.ble.bthome" and r.levelno >= logging.WARNING
    ]
    assert "advert not fully decoded: object 0xFF at byte 2" in warning.getMessage()


async def test_refused_adverts_are_counted():
    air, sink = BleAir(), RecordingSink()
    async with running(air, sink, bind_key=KEY.hex()) as driver:
        air.advertise(MAC, service_data={BTHOME_SERVICE_DATA: bytes.fromhex("40015d")})
        air.advertise(
            MAC, service_data={BTHOME_SERVICE_DATA: encrypted(b"\x01\x5d", key=bytes(16))}
        )
        await until(lambda: driver.refused == 2)
        assert sink.readings == []
        assert sink.online("hh-11") is False  # the wrong key's advert: offline, with the reason


async def test_no_bluetooth_raises_and_reports_offline():
    class NoBluetooth(BaseBleakScanner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(None, None)

        async def start(self) -> None:
            raise FileNotFoundError(2, "No such file or directory", "/run/dbus/system_bus_socket")

        async def stop(self) -> None:
            pass

    sink = RecordingSink()
    driver = BTHome(BTHomeConfig(device="hh-11", address=MAC), scanner_backend=NoBluetooth)
    with pytest.raises(FileNotFoundError):
        await driver.run(sink)
    assert sink.online("hh-11") is False
    assert "Bluetooth unavailable" in sink.availability_log[-1][2]


def test_config_checks_address_and_key_and_hides_the_key():
    cfg = BTHomeConfig(device="hh-11", address=MAC, bind_key=KEY.hex())
    assert KEY.hex() not in repr(cfg)
    assert KEY.hex() not in str(cfg.model_dump())
    with pytest.raises(ValidationError, match="32 hex digits"):
        BTHomeConfig(device="hh-11", address=MAC, bind_key="abcd")
    with pytest.raises(ValidationError, match="should match pattern"):
        BTHomeConfig(device="hh-11", address="A4C1388D18B2")
