"""An encrypted (NinebotCrypto) scooter read by the real agent, end to end to a real Mosquitto.

The agent builds the real `ninebot_ble` driver from its config through the registry;
only bleak's backend is the emulated air (the driver's `scanner_backend` /
`client_backend` hooks, passed by `registry.spec_for`). The scooter refuses
plaintext, wants the handshake and its power button (pressed, in the emulator,
after its third app-key offer), and checks the MAC and counter of every frame
with its own AES-CCM; the driver checks the MAC of every frame it receives.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import spec_for
from fleet.drivers.base import Driver
from fleet.drivers.ninebot.ble import PRESS_BUTTON_DETAIL, NinebotBle
from fleet.drivers.ninebot.crypto import Refusal
from fleet.drivers.ninebot.pairing import KeyStore
from tests.drivers.emulators.ninebot import ScooterState
from tests.drivers.emulators.ninebot_ble import Air
from tests.drivers.emulators.ninebot_crypto import TAMPERED_PCT
from tests.harness.agent import (
    Subscriber,
    availability_topic,
    running_agent,
    settings_of,
    telemetry_topic,
    write_agent_config,
)
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

DEVICE = "sw-crypt-1"
ADDRESS = "D4:3D:7E:65:43:99"
WITHIN = 20.0  # generous: seven helpers share two cores


def driver_config(key_dir: Path) -> str:
    return f"""
[[agent.drivers]]
kind = "ninebot_ble"
device = "{DEVICE}"
address = "{ADDRESS}"
model = "es"
poll_interval_s = 0.1
response_timeout_s = 0.3
offline_after_misses = 2
scan_timeout_s = 1.0
reconnect_backoff_initial_s = 0.1
reconnect_backoff_max_s = 0.4
encrypted_backoff_initial_s = 0.2
encrypted_backoff_max_s = 0.4
key_dir = "{key_dir}"
pair_interval_s = 0.05
pair_timeout_s = 5.0
"""


def test_an_encrypted_scooter_pairs_and_its_readings_reach_the_broker_but_no_forged_one(
    tmp_path: Path, mqtt_broker: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    air = Air()
    sc = air.add(ADDRESS, ScooterState(model="es", speed_kmh=17.5), encrypted=True)
    sc.crypto.press_after = 3  # the power button, pressed at the third app-key offer
    key_dir = tmp_path / "keys"
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, extra=driver_config(key_dir)))
    built: list[NinebotBle] = []

    def keep(driver: Driver) -> Driver:
        assert isinstance(driver, NinebotBle)
        built.append(driver)
        return driver

    (config,) = settings.agent.drivers
    real = spec_for(config, scanner_backend=air.scanner_backend, client_backend=air.client_backend)
    spec = dataclasses.replace(real, factory=lambda: keep(real.factory()))
    topic, avail = telemetry_topic(DEVICE), availability_topic(DEVICE)
    sub = Subscriber(settings, mqtt_broker, f"fleet/v1/allingtown/segway/{DEVICE}/#")
    try:
        with running_agent(Agent(settings, specs=[spec])):
            wait_until(lambda: len(sub.json(topic)) >= 3, timeout=WITHIN, message="3 readings")
            docs: list[dict[str, Any]] = sub.json(topic)
            for doc in docs:
                assert doc["battery"]["pct"] == 86
                assert doc["battery"]["voltage_v"] == pytest.approx(38.47)
                assert doc["status"]["speed_kmh"] == pytest.approx(17.5)
                assert doc["status"]["state"] == "riding"
                assert doc["status"]["odometer_km"] == pytest.approx(1234.567)
            # offline while it waited for the button (said with the reason), then online
            assert sub.payloads(avail)[-1] == b"online"
            assert f"device {DEVICE} offline: {PRESS_BUTTON_DETAIL}" in caplog.text
            (driver,) = built
            assert driver.pairings == 1

            # Three BMS replies with the battery % bit-flipped to 3 and the MAC left as it
            # was: refused by the driver, never on the broker; the readings go on.
            sc.crypto.tamper_bms_replies = 3
            wait_until(lambda: driver.refused[Refusal.MAC] >= 3, timeout=WITHIN, message="refused")
            after = len(sub.json(topic))
            wait_until(lambda: len(sub.json(topic)) >= after + 3, timeout=WITHIN, message="more")
    finally:
        sub.close()
    pcts = [doc["battery"].get("pct") for doc in sub.json(topic) if "battery" in doc]
    assert TAMPERED_PCT not in pcts
    # the BMS's 86, or the ESC's own 87 in a cycle whose BMS reply was refused
    assert set(pcts) <= {86, 87}
    assert dict(driver.refused) == {Refusal.MAC: 3}
    assert sc.connections == 1  # a refused frame is dropped, not a reason to reconnect
    # every frame the agent's driver sent passed the scooter's MAC and counter checks
    stats = sc.crypto.stats
    assert (stats.presses, stats.pairings) == (1, 1)
    assert (stats.bad_mac, stats.bad_counter, stats.unauthenticated) == (0, 0, 0)
    assert sc.emulator.writes() == []  # read-only, encrypted or not
    # the app key is kept privately (pairing happens once) and never logged
    key_file = KeyStore(key_dir).path(ADDRESS)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sc.crypto.paired_key is not None
    assert key_file.read_text().strip() == sc.crypto.paired_key.hex()
    assert sc.crypto.paired_key.hex() not in caplog.text
