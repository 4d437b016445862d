"""Real drivers in the real agent, from the config, to a real Mosquitto.

Serial drivers talk through real pseudo-terminal pairs to the device emulators
of tests/drivers/emulators (real protocol bytes); BLE drivers through bleak's
public backend hook with the shared emulated air.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import spec_for
from tests.drivers.emulators.ble import BleAir
from tests.drivers.emulators.gps import NmeaTalker, gga, rmc
from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState
from tests.harness.agent import (
    Subscriber,
    availability_topic,
    retained,
    running_agent,
    settings_of,
    telemetry_topic,
    write_agent_config,
)
from tests.harness.process import spawn, stop_process, tail
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

FLEET = str(Path(sys.executable).with_name("fleet"))
# protocols.md §3.2: a handheld's BTHome v2 battery advert (93 %, 3.492 V, 24.6 °C).
HANDHELD_ADVERT = bytes.fromhex("0201060C16D2FC40015D0CA40D45F600")
MAC = "A4:C1:38:8D:18:B2"


@pytest.fixture
def scooter(tmp_path: Path) -> Iterator[PtyScooter]:
    sc = PtyScooter(tmp_path / "ttyNB0", NinebotEmulator(ScooterState(model="es")))
    yield sc
    with contextlib.suppress(OSError):
        sc.close()


def ninebot_driver(port: Path, device: str = "sw-21") -> str:
    return f"""
[[agent.drivers]]
kind = "ninebot_serial"
device = "{device}"
port = "{port}"
model = "es"
poll_interval_s = 0.1
response_timeout_s = 0.1
offline_after_misses = 2
reopen_backoff_initial_s = 0.05
reopen_backoff_max_s = 0.2
"""


def check_scooter_reading(doc: dict[str, Any]) -> None:
    """The values of the emulator's default ScooterState, as v1 telemetry."""
    battery, status = doc["battery"], doc["status"]
    assert battery["pct"] == 86
    assert battery["voltage_v"] == pytest.approx(38.47)
    assert battery["current_a"] == pytest.approx(-3.2)
    assert battery["health_pct"] == 96
    assert battery["charging"] is False
    assert status["odometer_km"] == pytest.approx(1234.567)
    assert status["range_km"] == pytest.approx(21.0)
    assert status["error_code"] == 0
    assert status["locked"] is False
    assert status["firmware"] == "1.3.9"
    assert status["state"] == "riding"


def test_ninebot_serial_through_a_pty_to_the_broker(
    tmp_path: Path, mqtt_broker: MosquittoServer, scooter: PtyScooter
) -> None:
    config = write_agent_config(tmp_path, mqtt_broker, agent=ninebot_driver(scooter.port))
    settings = settings_of(config)
    sub = Subscriber(settings, mqtt_broker, "fleet/v1/allingtown/segway/sw-21/#")
    with running_agent(Agent(settings)):
        topic = telemetry_topic("sw-21")
        wait_until(lambda: len(sub.json(topic)) >= 3, message="3 scooter readings")
        docs = sub.json(topic)
        assert [doc["seq"] for doc in docs[:3]] == [1, 2, 3]
        for doc in docs:
            check_scooter_reading(doc)
        assert sub.payloads(availability_topic("sw-21"))[-1] == b"online"
        # The cable is pulled: offline (retained); plugged back: online and readings again.
        scooter.unplug()
        wait_until(
            lambda: sub.payloads(availability_topic("sw-21"))[-1:] == [b"offline"],
            message="offline after unplug",
        )
        assert retained(settings, mqtt_broker, availability_topic("sw-21")) == b"offline"
        before = len(sub.json(topic))
        scooter.plug()
        wait_until(lambda: len(sub.json(topic)) >= before + 2, message="readings after replug")
        assert sub.payloads(availability_topic("sw-21"))[-1] == b"online"
    assert scooter.emulator.writes() == []  # read-only, end to end
    sub.close()


def test_nmea_gps_through_a_pty_to_the_broker(tmp_path: Path, mqtt_broker: MosquittoServer) -> None:
    with NmeaTalker(period_s=0.01) as talker:
        talker.play([gga("123519", 41.2705, -72.947), rmc("123519", 41.2705, -72.947, knots=5)])
        driver = f"""
[[agent.drivers]]
kind = "nmea_gps"
device = "hh-21"
port = "{talker.port}"
min_interval_s = 0.05
"""
        settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent=driver))
        topic = telemetry_topic("hh-21", kind="handheld")
        sub = Subscriber(settings, mqtt_broker, topic)
        with running_agent(Agent(settings)):
            wait_until(lambda: len(sub.json(topic)) >= 2, message="2 positions")
        location: dict[str, Any] = sub.json(topic)[0]["location"]
        assert location["lat"] == pytest.approx(41.2705, abs=1e-6)
        assert location["lon"] == pytest.approx(-72.947, abs=1e-6)
        assert location["speed_kmh"] == pytest.approx(5 * 1.852, abs=0.01)
        assert sub.seqs()[:2] == [1, 2]
        sub.close()


def test_bthome_through_the_bleak_backend_and_the_watchdog_restarts_its_scanner(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    driver = f"""
ble_watchdog_s = 1

[[agent.drivers]]
kind = "bthome"
device = "hh-22"
address = "{MAC}"
min_interval_s = 0
offline_after_s = 30
"""
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent=driver))
    air = BleAir()
    specs = [spec_for(c, scanner_backend=air.scanner_backend) for c in settings.agent.drivers]
    topic = telemetry_topic("hh-22", kind="handheld")
    sub = Subscriber(settings, mqtt_broker, topic)
    with running_agent(Agent(settings, specs=specs)) as agent:
        wait_until(lambda: air.scanners, message="scanner started")
        agent.on_loop(air.advertise_raw, MAC, HANDHELD_ADVERT, -70)
        wait_until(lambda: sub.json(topic), message="a BTHome reading")
        battery: dict[str, Any] = sub.json(topic)[0]["battery"]
        assert battery == {"pct": 93.0, "voltage_v": 3.492, "temp_c": 24.6}
        # No advert for a watchdog period: the BLE driver (and its scanner) is restarted.
        starts = air.scanner_starts
        wait_until(lambda: air.scanner_starts > starts, timeout=20, message="scanner restarted")
        assert agent.watchdog.restarts >= 1
        assert agent.drivers[0].failures == 0
    sub.close()


def test_fleet_agent_process_reads_a_scooter_on_a_pty(
    tmp_path: Path, mqtt_broker: MosquittoServer, scooter: PtyScooter
) -> None:
    config = write_agent_config(tmp_path, mqtt_broker, agent=ninebot_driver(scooter.port, "sw-22"))
    settings = settings_of(config)
    topic = telemetry_topic("sw-22")
    sub = Subscriber(settings, mqtt_broker, topic)
    log = tmp_path / "agent.log"
    proc = spawn([FLEET, "agent", "--config", str(config)], log)
    try:
        wait_until(lambda: len(sub.json(topic)) >= 2, message=f"readings\n{tail(log)}")
    finally:
        assert stop_process(proc, timeout=20) == 0, tail(log)
    check_scooter_reading(sub.json(topic)[0])
    assert retained(settings, mqtt_broker, availability_topic("sw-22")) == b"offline"
    sub.close()
