"""A Segway PT's two packs, emulated behind fake I²C buses, through the real agent to Mosquitto.

The driver is the real one, built from the config by the agent's registry; only the bus
object is the emulator's (the driver's `open_bus` hook, like the BLE drivers' backend hooks).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import spec_for
from tests.drivers.emulators.segway_pt import EmulatedPack, two_buses
from tests.harness.agent import (
    Subscriber,
    availability_topic,
    retained,
    running_agent,
    settings_of,
    telemetry_topic,
    write_agent_config,
)
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

DEVICE = "pt-21"
SERIAL_B = "C01061400117"
DRIVER = f"""
[[agent.drivers]]
kind = "segway_pt_battery"
device = "{DEVICE}"
buses = [3, "/dev/i2c-4"]
poll_interval_s = 0.05
checksum_retries = 3
"""


def test_a_pt_publishes_the_lower_charge_the_hottest_sensor_and_both_serials(
    tmp_path: Path, mqtt_broker: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = EmulatedPack.real()  # 25 %, sensors 22.25-23.56 °C, "C01061400098"
    b = EmulatedPack.made(
        soc_pct=64, serial=SERIAL_B, sensors_c=(24.0, 21.0, 33.25, 23.0), current_raw=0x0001
    )
    a.noise_every = 13  # a noisy harness: re-read, counted, never published
    buses = two_buses(a, b, first=3)
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent=DRIVER))
    specs = [spec_for(c, open_bus=buses.open) for c in settings.agent.drivers]
    topic, avail = telemetry_topic(DEVICE), availability_topic(DEVICE)
    sub = Subscriber(settings, mqtt_broker, f"fleet/v1/allingtown/segway/{DEVICE}/#")
    caplog.set_level(logging.INFO)
    with running_agent(Agent(settings, specs=specs)):
        wait_until(lambda: len(sub.json(topic)) >= 3, timeout=30, message="3 PT readings")
        docs: list[dict[str, Any]] = sub.json(topic)
        for doc in docs:
            assert doc["battery"] == {
                "pct": 25,  # pack A's, the lower
                "current_a": pytest.approx(1 / 0.128),
                "temp_c": 33.25,  # pack B's sensor 2
                "charging": True,  # pack B takes current
                "cell_spread_v": pytest.approx(5 * 8 / 1023),
                "pack_ids": f"C01061400098,{SERIAL_B}",
            }
            assert "status" not in doc
            assert "location" not in doc
        assert sub.payloads(avail)[-1] == b"online"
        assert f"{DEVICE}: " in caplog.text
        assert " bad checksums, " in caplog.text
        # Pack B loses its 12 V: the PT goes offline, retained, with the reason in the log.
        b.answering = False
        wait_until(lambda: sub.payloads(avail)[-1:] == [b"offline"], message="offline")
        assert retained(settings, mqtt_broker, avail) == b"offline"
        reason = "pack B does not answer on /dev/i2c-4 at 0x31 - is 12 V on BATTERY ENABLE?"
        assert f"device {DEVICE} offline: {reason} ([Errno 121] Remote I/O error)" in caplog.text
        # Back: online again, and the readings resume.
        before = len(sub.json(topic))
        b.answering = True
        wait_until(lambda: len(sub.json(topic)) >= before + 2, timeout=30, message="readings")
        assert sub.payloads(avail)[-1] == b"online"
    assert {v for _, v in buses.buses["/dev/i2c-3"].writes} <= {0x1D, 0xD4, 0x95, 0x17, 0x96, 0xC6}
    sub.close()
