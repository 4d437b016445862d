"""`ninebot_ble` against an emulated NinebotCrypto scooter, through bleak's `backend=` hook.

The scooter (tests/drivers/emulators/ninebot_crypto.py) refuses plaintext, wants the
handshake and its power button, and checks the MAC and counter of every frame the
driver sends with its own AES-CCM; readings are what the driver publishes to its sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fleet.drivers.ninebot.ble import (
    ENCRYPTED_DETAIL,
    GEN3_DETAIL,
    PRESS_BUTTON_DETAIL,
    UNREADABLE_DETAIL,
    NinebotBle,
)
from fleet.drivers.ninebot.config import NinebotBleConfig
from fleet.drivers.ninebot.crypto import Refusal
from fleet.drivers.ninebot.pairing import KeyStore
from tests.drivers.emulators.ninebot_ble import Air, FakeScooter
from tests.drivers.emulators.ninebot_crypto import TAMPERED_PCT, CryptoScooter
from tests.drivers.emulators.recording import RecordingSink, until

DEVICE = "seg-ble-7"
ADDRESS = "D4:3D:7E:65:43:21"
WITHIN = 15.0  # generous: seven helpers share two cores


def config(key_dir: Path, **kw: Any) -> NinebotBleConfig:
    base: dict[str, Any] = {
        "device": DEVICE,
        "address": ADDRESS,
        "poll_interval_s": 0.05,
        "response_timeout_s": 0.2,
        "offline_after_misses": 2,
        "scan_timeout_s": 0.5,
        "reconnect_backoff_initial_s": 0.1,
        "reconnect_backoff_max_s": 0.4,
        "encrypted_backoff_initial_s": 0.2,
        "encrypted_backoff_max_s": 0.4,
        "key_dir": str(key_dir),
        "pair_interval_s": 0.05,
        "pair_timeout_s": 5.0,
    }
    base.update(kw)
    return NinebotBleConfig.model_validate(base)


@contextlib.asynccontextmanager
async def running(
    air: Air, sink: RecordingSink, key_dir: Path, **kw: Any
) -> AsyncIterator[NinebotBle]:
    driver = NinebotBle(
        config(key_dir, **kw),
        clock=lambda: 1_700_000_000_000,
        scanner_backend=air.scanner_backend,
        client_backend=air.client_backend,
    )
    task = asyncio.create_task(driver.run(sink))
    try:
        yield driver
        assert not task.done(), "the driver must only end when cancelled"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def encrypted_scooter(air: Air, **kw: Any) -> FakeScooter:
    sc = air.add(ADDRESS, encrypted=True, **kw)
    sc.crypto.press_after = 3
    return sc


def pcts(sink: RecordingSink) -> list[float | None]:
    return [r.battery.pct if r.battery is not None else None for r in sink.readings]


# --- the emulator is a real check -----------------------------------------------------------


def test_emulator_refuses_a_frame_with_a_wrong_mac_and_plaintext() -> None:
    from fleet.drivers.ninebot.crypto import NinebotCrypto
    from tests.drivers.emulators.ninebot import NinebotEmulator, ninebot_frame

    scooter = CryptoScooter("NBScooter1234", NinebotEmulator())
    app = NinebotCrypto("NBScooter1234")
    assert scooter.feed(ninebot_frame(0x3E, 0x20, 0x01, 0x1A, b"\x02")) == b""
    assert scooter.stats.plaintext_refused == 1
    init = bytearray(app.encrypt(bytes.fromhex("5AA5003E215B00")))
    init[-3] ^= 1
    assert scooter.feed(bytes(init)) == b""
    assert scooter.stats.bad_mac == 1
    reply = scooter.feed(app.encrypt(bytes.fromhex("5AA5003E215B00")))
    assert app.decrypt(reply)[7:23] == scooter.ble_key


# --- pairing and reading --------------------------------------------------------------------


async def test_pairs_with_the_button_and_reads_end_to_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleet.drivers.ninebot")
    air = Air()
    sc = encrypted_scooter(air)
    sink = RecordingSink()
    async with running(air, sink, tmp_path / "keys") as driver:
        await until(lambda: len(sink.readings) >= 3, within=WITHIN, message="readings")
    r = sink.readings[-1]
    assert r.device == DEVICE
    assert r.battery is not None
    assert r.status is not None
    assert r.battery.pct == 86
    assert r.battery.voltage_v == pytest.approx(38.47)
    assert r.status.odometer_km == pytest.approx(1234.567)
    assert r.status.rssi_dbm == -61
    # the way there: offline while waiting for the button, said once in the log
    states = [(online, detail) for _, online, detail in sink.availability_log]
    assert states == [(False, PRESS_BUTTON_DETAIL), (True, "")]
    assert caplog.text.count("press its power button") == 1
    stats = sc.crypto.stats
    assert stats.plaintext_refused == 2  # the probe, offline_after_misses times
    assert (stats.inits, stats.app_key_offers, stats.presses, stats.pairings) == (1, 3, 1, 1)
    # every frame the driver sent had the right MAC and the next counter
    assert (stats.bad_mac, stats.bad_counter, stats.unauthenticated) == (0, 0, 0)
    assert sum(driver.refused.values()) == 0
    assert sc.emulator.requests
    assert sc.emulator.writes() == []
    assert 0 < sc.max_write_len <= 20
    # the key is kept, privately, and never shown
    key_file = KeyStore(tmp_path / "keys").path(ADDRESS)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert sc.crypto.paired_key is not None
    assert key_file.read_text().strip() == sc.crypto.paired_key.hex()
    assert sc.crypto.paired_key.hex() not in caplog.text


async def test_stored_key_is_reused_without_a_button_press(tmp_path: Path) -> None:
    air = Air()
    sc = encrypted_scooter(air)
    first = RecordingSink()
    async with running(air, first, tmp_path):
        await until(lambda: first.readings, within=WITHIN, message="first readings")
    offers = sc.crypto.stats.app_key_offers
    # the agent restarts: a new driver, the same key directory
    second = RecordingSink()
    async with running(air, second, tmp_path) as driver:
        await until(lambda: len(second.readings) >= 2, within=WITHIN, message="readings again")
        # and a dropped link reconnects without the button too
        sc.drop()
        await until(lambda: driver.pairings >= 2, within=WITHIN, message="re-paired")
        count = len(second.readings)
        await until(lambda: len(second.readings) > count, within=WITHIN, message="resumed")
    assert sc.crypto.stats.presses == 1
    assert sc.crypto.stats.app_key_offers == offers + 2  # one 5C per connection
    assert PRESS_BUTTON_DETAIL not in [d for _, _, d in second.availability_log]
    assert (sc.crypto.stats.bad_mac, sc.crypto.stats.bad_counter) == (0, 0)


async def test_known_encrypted_scooter_gets_one_plaintext_probe_per_reconnect(
    tmp_path: Path,
) -> None:
    air = Air()
    sc = encrypted_scooter(air)
    sink = RecordingSink()
    async with running(air, sink, tmp_path) as driver:
        await until(lambda: sink.readings, within=WITHIN, message="readings")
        assert sc.crypto.stats.plaintext_refused == 2
        sc.drop()
        await until(lambda: driver.pairings >= 2, within=WITHIN, message="re-paired")
    assert sc.crypto.stats.plaintext_refused == 3


async def test_displaced_key_is_said_and_pairing_starts_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleet.drivers.ninebot")
    old = bytes(range(16))
    KeyStore(tmp_path).save(ADDRESS, old)
    air = Air()
    sc = encrypted_scooter(air)
    sc.crypto.paired_key = bytes(range(16, 32))  # the official app paired since
    sink = RecordingSink()
    async with running(air, sink, tmp_path):
        await until(lambda: sink.readings, within=WITHIN, message="readings")
    assert "no longer accepts the stored app key" in caplog.text
    assert sc.crypto.stats.presses == 1
    assert sc.crypto.paired_key not in (old, bytes(range(16, 32)))
    assert KeyStore(tmp_path).load(ADDRESS) == sc.crypto.paired_key
    assert (DEVICE, False, PRESS_BUTTON_DETAIL) in sink.availability_log
    assert old.hex() not in caplog.text


async def test_nobody_presses_the_button_bounded_then_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleet.drivers.ninebot")
    air = Air()
    sc = encrypted_scooter(air)
    sc.crypto.press_after = 10**9
    sink = RecordingSink()
    async with running(air, sink, tmp_path, pair_timeout_s=0.3, pair_interval_s=0.05):
        await until(lambda: sc.connections >= 2, within=WITHIN, message="tries again")
    assert sink.readings == []
    assert (
        DEVICE,
        False,
        "not paired: the power button was not pressed within 0.3 s",
    ) in sink.availability_log
    assert (DEVICE, False, PRESS_BUTTON_DETAIL) in sink.availability_log
    # about one offer per pair_interval_s for pair_timeout_s, per connection: no spin
    assert sc.crypto.stats.app_key_offers <= 9 * sc.connections
    gaps = [b - a for a, b in itertools.pairwise(sc.attempts)]
    assert min(gaps) >= 0.3 + 0.2  # the pairing window, then the encrypted backoff
    assert caplog.text.count("press its power button") == 1
    assert not KeyStore(tmp_path).path(ADDRESS).exists()


async def test_tampered_reply_is_refused_counted_and_never_published(tmp_path: Path) -> None:
    air = Air()
    sc = encrypted_scooter(air)
    sink = RecordingSink()
    async with running(air, sink, tmp_path) as driver:
        await until(lambda: sink.readings, within=WITHIN, message="readings")
        sc.crypto.tamper_bms_replies = 3  # battery % bit-flipped to 3, MAC left alone
        await until(lambda: driver.refused[Refusal.MAC] >= 3, within=WITHIN, message="refused")
        count = len(sink.readings)
        await until(lambda: len(sink.readings) > count + 2, within=WITHIN, message="go on")
    assert sc.crypto.tamper_bms_replies == 0
    assert driver.refused == {Refusal.MAC: 3}
    assert TAMPERED_PCT not in pcts(sink)
    # the BMS's, or the ESC's (or none) in a cycle whose BMS reply was refused
    assert set(pcts(sink)) <= {86, 87, None}
    assert sc.connections == 1  # a bad frame is dropped, not a reason to reconnect


async def test_encrypted_answer_to_plaintext_goes_straight_to_the_handshake(
    tmp_path: Path,
) -> None:
    air = Air()
    sc = encrypted_scooter(air, plaintext_reply=True)
    sink = RecordingSink()
    async with running(air, sink, tmp_path, offline_after_misses=3):
        await until(lambda: sink.readings, within=WITHIN, message="readings")
    assert sc.crypto.stats.plaintext_refused == 1  # not three: the reply said enough


async def test_key_directory_that_cannot_be_written_still_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    air = Air()
    encrypted_scooter(air)
    sink = RecordingSink()
    async with running(air, sink, blocker / "keys"):
        await until(lambda: len(sink.readings) >= 2, within=WITHIN, message="readings")
    assert "could not be stored" in caplog.text


# --- unsupported ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "detail"),
    [
        ({"gen3": True}, GEN3_DETAIL),
        ({"gen3_frames": True}, GEN3_DETAIL),
        ({"encrypted": True, "plaintext_reply": True, "name": "NBScooter9999"}, ENCRYPTED_DETAIL),
        ({"encrypted": True, "init_reply_crc_wrong": True}, UNREADABLE_DETAIL),
    ],
    ids=["gen3-service", "gen3-frames", "not-ninebotcrypto", "init-unreadable"],
)
async def test_unsupported_encryption_is_offline_with_its_reason_on_the_slow_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kw: dict[str, Any], detail: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="fleet.drivers.ninebot")
    air = Air()
    kw = dict(kw)  # the parameter is shared between runs: do not change it
    crc_wrong = kw.pop("init_reply_crc_wrong", False)
    sc = air.add(ADDRESS, **kw)
    sc.crypto.init_reply_crc_wrong = crc_wrong
    if "name" in kw:
        # it advertises one name but keys its crypto with another: INIT never decrypts
        sc.crypto = CryptoScooter("MIScooterXXXX", sc.emulator)
    sink = RecordingSink()
    async with running(air, sink, tmp_path):
        await until(lambda: len(sc.attempts) >= 3, within=WITHIN, message="re-probes")
    assert sink.readings == []
    assert sink.availability_log == [(DEVICE, False, detail)]
    gaps = [b - a for a, b in itertools.pairwise(sc.attempts)]
    assert min(gaps) >= 0.2  # encrypted_backoff_initial_s, not the 0.1 s reconnect one
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and detail in r.message]
    assert len(warnings) == 1
