"""The collector end to end on a real Mosquitto and a real InfluxDB."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.harness.fleet import (
    Listener,
    publisher,
    running_collector,
    settings_from,
    telemetry,
    write_config,
)
from tests.harness.samples import DESIGN_EXAMPLE
from tests.harness.waiting import wait_until

TS_MS = int(time.time() * 1000) - 60_000  # a minute ago: inside every window
TOPIC = "fleet/v1/allingtown/segway/sw-03/telemetry"


@pytest.fixture
def settings(tmp_path, mqtt_broker, influx, tmp_db):
    return settings_from(write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db))


def full_reading() -> dict[str, Any]:
    ts = datetime.fromtimestamp(TS_MS / 1000, UTC).isoformat(timespec="milliseconds")
    return {**DESIGN_EXAMPLE, "ts": ts}


def test_a_reading_is_stored_with_its_fields_tags_and_device_timestamp(
    settings, mqtt_broker, influx, tmp_db
):
    with running_collector(settings, mqtt_broker), publisher(settings) as pub:
        pub.publish(TOPIC, json.dumps(full_reading()).encode(), qos=1)
        rows = wait_until(
            lambda: influx.rows("SELECT * FROM status", tmp_db),
            timeout=15,
            message="status point stored",
        )
        battery = influx.rows("SELECT * FROM battery", tmp_db)
        location = influx.rows("SELECT * FROM location", tmp_db)
    tags = {"site": "allingtown", "kind": "segway", "device": "sw-03"}
    assert battery == [
        {
            "time": TS_MS,
            **tags,
            "seq": 1842,
            "pct": 87.5,
            "voltage_v": 72.1,
            "current_a": -3.2,
            "temp_c": 24.5,
            "charging": False,
            "health_pct": 96,
        }
    ]
    assert location == [
        {
            "time": TS_MS,
            **tags,
            "seq": 1842,
            "lat": 41.2705,
            "lon": -72.947,
            "accuracy_m": 5,
            "speed_kmh": 8.2,
            "heading_deg": 180,
        }
    ]
    assert rows == [
        {
            "time": TS_MS,
            **tags,
            "seq": 1842,
            "state": "riding",
            "odometer_km": 1234.5,
            "range_km": 21,
            "error_code": 0,
            "locked": False,
            "rssi_dbm": -61,
            "firmware": "1.3.9",
        }
    ]
    # Field types never flip: a decimal quantity sent as a JSON int is still a float.
    keys = influx.rows('SHOW FIELD KEYS FROM "battery"', tmp_db)
    assert {r["fieldKey"]: r["fieldType"] for r in keys}["health_pct"] == "float"


def test_an_owntracks_location_becomes_a_handheld_reading(settings, mqtt_broker, influx, tmp_db):
    tst = TS_MS // 1000
    payload = {
        "_type": "location",
        "tid": "hh",
        "batt": 64,
        "bs": 2,
        "lat": 41.27,
        "lon": -72.95,
        "acc": 12,
        "vel": 4,
        "tst": tst,
        "conn": "m",
    }
    with running_collector(settings, mqtt_broker), publisher(settings) as pub:
        pub.publish("owntracks/officer7/hh-07", json.dumps(payload).encode(), qos=1)
        location = wait_until(
            lambda: influx.rows("SELECT * FROM location", tmp_db),
            timeout=15,
            message="location stored",
        )
        battery = influx.rows("SELECT * FROM battery", tmp_db)
    tags = {"site": "allingtown", "kind": "handheld", "device": "hh-07"}
    assert battery == [{"time": tst * 1000, **tags, "pct": 64, "charging": True}]
    assert location == [
        {"time": tst * 1000, **tags, "lat": 41.27, "lon": -72.95, "accuracy_m": 12, "speed_kmh": 4}
    ]


BAD_INPUTS = [
    ("malformed JSON", TOPIC, b'{"schema": 1, "device": "sw-03", ', "bad_json"),
    (
        "wrong type",
        TOPIC,
        json.dumps({**full_reading(), "battery": {"pct": "87"}}).encode(),
        "schema",
    ),
    (
        "out of range",
        TOPIC,
        json.dumps({**full_reading(), "battery": {"pct": 130}}).encode(),
        "range",
    ),
    (
        "topic/device mismatch",
        TOPIC,
        json.dumps({**full_reading(), "device": "sw-04"}).encode(),
        "device_mismatch",
    ),
    (
        "id with a space",
        "fleet/v1/allingtown/segway/sw 03/telemetry",
        json.dumps({**full_reading(), "device": "sw 03"}).encode(),
        "bad_topic",
    ),
    (
        "id with a comma",
        "fleet/v1/allingtown/segway/sw,03/telemetry",
        json.dumps({**full_reading(), "device": "sw,03"}).encode(),
        "bad_topic",
    ),
    (
        "id with a quote",
        'fleet/v1/allingtown/segway/sw"03/telemetry',
        json.dumps({**full_reading(), "device": 'sw"03'}).encode(),
        "bad_topic",
    ),
    # Mosquitto itself refuses control characters in topics, so a newline can only come in the payload.
    (
        "id with a newline",
        TOPIC,
        json.dumps({**full_reading(), "device": "sw\n03"}).encode(),
        "range",
    ),
    (
        "id with =",
        "fleet/v1/allingtown/segway/sw=03/telemetry",
        json.dumps({**full_reading(), "device": "sw=03"}).encode(),
        "bad_topic",
    ),
    ("1 MB payload", TOPIC, b'{"schema": 1, "pad": "' + b"x" * 1_000_000 + b'"}', "too_large"),
    (
        "an hour in the future",
        TOPIC,
        json.dumps({**full_reading(), "ts": time.time() + 3600}).encode(),
        "future_ts",
    ),
]


def test_bad_input_is_dead_lettered_with_its_reason_counted_and_the_collector_keeps_going(
    settings, mqtt_broker, influx, tmp_db
):
    dead = Listener(settings, mqtt_broker, "fleet/v1/+/deadletter")
    try:
        with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
            for _, topic, payload, _ in BAD_INPUTS:
                pub.publish(topic, payload, qos=1)
            good = {**full_reading(), "seq": 1843}
            pub.publish(TOPIC, json.dumps(good).encode(), qos=1)
            wait_until(
                lambda: len(dead.messages) >= len(BAD_INPUTS),
                timeout=15,
                message="every bad input dead-lettered",
            )
            stored = wait_until(
                lambda: influx.rows("SELECT seq FROM battery", tmp_db),
                timeout=15,
                message="the good reading after them is stored",
            )
            counted = dict(collector.ingest.counters.rejected)
    finally:
        dead.close()
    assert stored == [{"time": TS_MS, "seq": 1843}]
    letters = dead.json()
    assert [d["reason"] for d in letters] == [reason for *_, reason in BAD_INPUTS]
    assert [d["topic"] for d in letters] == [topic for _, topic, _, _ in BAD_INPUTS]
    for letter in letters:
        assert letter["detail"], letter
        assert len(json.dumps(letter)) < 4096  # the 1 MB payload is truncated, not echoed
    by_reason: dict[str, dict[str, Any]] = {}
    for letter in letters:
        by_reason.setdefault(letter["reason"], letter)
    assert "battery.pct" in by_reason["range"]["detail"]
    assert "sw-04" in by_reason["device_mismatch"]["detail"]
    expected: dict[str, int] = {}
    for *_, reason in BAD_INPUTS:
        expected[reason] = expected.get(reason, 0) + 1
    assert counted == expected
    assert all(m.topic == "fleet/v1/allingtown/deadletter" for m in dead.messages)


def test_the_pipeline_measurement_reports_the_collectors_counters(
    settings, mqtt_broker, influx, tmp_db
):
    with running_collector(settings, mqtt_broker), publisher(settings) as pub:
        for seq in (1, 2, 5):  # 3 and 4 never arrive
            pub.publish(TOPIC, telemetry("sw-03", seq, TS_MS + seq), qos=1)
        pub.publish(TOPIC, b"not json", qos=1)

        def latest() -> dict[str, Any] | None:
            rows = influx.rows(
                "SELECT * FROM pipeline WHERE device = '' ORDER BY time DESC LIMIT 1", tmp_db
            )
            # Stats points are written too, so wait on what the readings did.
            return (
                rows[0] if rows and rows[0]["received"] >= 4 and rows[0]["spooled"] >= 3 else None
            )

        row = wait_until(latest, timeout=20, message="pipeline point counting the readings")
        device = wait_until(
            lambda: influx.rows(
                "SELECT * FROM pipeline WHERE device = 'sw-03' ORDER BY time DESC LIMIT 1", tmp_db
            ),
            timeout=20,
        )
    assert row is not None
    assert row["received"] == 4
    assert row["accepted"] == 3
    assert row["rejected"] == 1
    assert row["rejected_bad_json"] == 1
    assert row["seq_missing"] == 2
    assert row["site"] == "allingtown"
    assert row["instance"] == settings.mqtt.client_id
    assert device[0]["seq_missing"] == 2
    assert device[0]["seq_last"] == 5
    assert device[0]["kind"] == "segway"
