"""The contract's additions end to end: a Ninebot emulator's own speed through the real agent,
Mosquitto, collector and InfluxDB; the pack fields stored in `battery`; old messages stored as
before; bad values dead-lettered with their reason while the collector keeps going."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.daemon.agent.app import Agent
from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState
from tests.harness.agent import running_agent, settings_of, write_agent_config
from tests.harness.fleet import Listener, publisher, running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

TS_MS = int(time.time() * 1000) - 60_000  # a minute ago: inside every window
TOPIC = "fleet/v1/allingtown/segway/sw-03/telemetry"
TAGS = {"site": "allingtown", "kind": "segway", "device": "sw-03"}
PACKS = "C01061400098,C01061400117"


@pytest.fixture
def collector_settings(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str
) -> FleetSettings:
    return settings_from(write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db))


@pytest.fixture
def scooter(tmp_path: Path) -> Iterator[PtyScooter]:
    sc = PtyScooter(tmp_path / "ttyNB0", NinebotEmulator(ScooterState(model="es", speed_kmh=12.3)))
    yield sc
    with contextlib.suppress(OSError):
        sc.close()


def field_types(influx: InfluxServer, db: str, measurement: str) -> dict[str, str]:
    keys = influx.rows(f'SHOW FIELD KEYS FROM "{measurement}"', db)
    return {r["fieldKey"]: r["fieldType"] for r in keys}


def test_a_ninebot_scooters_own_speed_reaches_influxdb(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    collector_settings: FleetSettings,
    scooter: PtyScooter,
) -> None:
    driver = f"""
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-31"
port = "{scooter.port}"
model = "es"
poll_interval_s = 0.1
response_timeout_s = 0.2
"""
    agent_settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent=driver))
    query = "SELECT speed_kmh, state FROM status WHERE device = 'sw-31' ORDER BY time DESC LIMIT 1"

    def latest_speed() -> float | None:
        rows = influx.rows(query, tmp_db)
        return rows[0]["speed_kmh"] if rows else None

    with running_collector(collector_settings, mqtt_broker), running_agent(Agent(agent_settings)):
        wait_until(lambda: latest_speed() == 12.3, timeout=30, message="12.3 km/h stored")
        # Rolling backwards: the sign is kept; a changed speed shows the value is live.
        scooter.emulator.state.speed_kmh = -2.5
        wait_until(lambda: latest_speed() == -2.5, timeout=30, message="-2.5 km/h stored")
    assert influx.rows(query, tmp_db)[0]["state"] == "riding"
    assert field_types(influx, tmp_db, "status")["speed_kmh"] == "float"
    # The ESC's speed needs no position: nothing was written to `location` for it.
    assert influx.rows("SELECT * FROM location WHERE device = 'sw-31'", tmp_db) == []
    spread = influx.rows("SELECT last(cell_spread_v) FROM battery WHERE device = 'sw-31'", tmp_db)
    assert spread[0]["last"] == pytest.approx(0.009)  # the emulator's cells, 3847..3856 mV
    assert scooter.emulator.writes() == []  # still read-only


def message(seq: int, **groups: Any) -> bytes:
    """A reading at TS_MS + seq: one point each (same series and time would merge into one)."""
    doc = {"schema": 1, "device": "sw-03", "seq": seq, "ts": (TS_MS + seq) / 1000}
    return json.dumps(doc | groups).encode()


OLD_BATTERY = {"pct": 87.5, "voltage_v": 72.1, "charging": False}
BAD = [
    (message(2, battery={"pack_ids": "C0106 1400098"}), "range", "battery.pack_ids:"),
    (message(3, battery={"cell_spread_v": 11}), "range", "battery.cell_spread_v: 11 is outside 0..10"),
    (message(4, status={"speed_kmh": "12"}), "schema", 'status.speed_kmh: expected a number, got string "12"'),
    (message(5, status={"speed_kmh": 512.0}), "range", "status.speed_kmh: 512.0 is outside -100..400"),
]  # fmt: skip


def test_pack_fields_are_stored_old_messages_unchanged_and_bad_values_dead_lettered(
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    collector_settings: FleetSettings,
) -> None:
    dead = Listener(collector_settings, mqtt_broker, "fleet/v1/+/deadletter")
    try:
        with (
            running_collector(collector_settings, mqtt_broker) as collector,
            publisher(collector_settings) as pub,
        ):
            pub.publish(TOPIC, message(1, battery=OLD_BATTERY), qos=1)  # an agent of before
            for body, _, _ in BAD:
                pub.publish(TOPIC, body, qos=1)
            new = {**OLD_BATTERY, "cell_spread_v": 0.031, "pack_ids": PACKS}
            pub.publish(TOPIC, message(6, battery=new, status={"speed_kmh": 0}), qos=1)
            wait_until(lambda: len(dead.messages) >= len(BAD), timeout=30, message="dead letters")

            def both() -> list[dict[str, Any]]:
                rows = influx.rows("SELECT * FROM battery", tmp_db)
                return rows if len(rows) == 2 else []

            rows = wait_until(both, timeout=30, message="both good readings stored")
            rejected = dict(collector.ingest.counters.rejected)
    finally:
        dead.close()
    old, added = rows
    # The old reading's point has exactly its old fields: the new columns are null in it.
    assert {k: v for k, v in old.items() if v is not None} == {
        "time": TS_MS + 1, **TAGS, "seq": 1, **OLD_BATTERY
    }  # fmt: skip
    assert added == {"time": TS_MS + 6, **TAGS, "seq": 6, **new}
    status = influx.rows("SELECT speed_kmh FROM status", tmp_db)
    assert status == [{"time": TS_MS + 6, "speed_kmh": 0}]
    types = field_types(influx, tmp_db, "battery")
    assert (types["pack_ids"], types["cell_spread_v"]) == ("string", "float")
    letters = dead.json()
    assert [(d["reason"], d["payload"]) for d in letters] == [
        (reason, body.decode()) for body, reason, _ in BAD
    ]
    for letter, (_, _, detail) in zip(letters, BAD, strict=True):
        assert letter["detail"].startswith(detail), letter
    assert rejected == {"range": 3, "schema": 1}
