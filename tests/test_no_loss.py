"""No reading lost, checked by seq, while the parts around the collector fail.

Each scenario publishes 1,000 numbered readings of one device with QoS 1 and
distinct timestamps, breaks something mid-stream, and then requires InfluxDB
to hold every seq exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.process import spawn, stop_process, tail
from tests.harness.servers import InfluxServer, ServerError
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.slow

N = 1000
DEVICE = "sw-07"
TOPIC = f"fleet/v1/allingtown/segway/{DEVICE}/telemetry"
BASE_MS = int(time.time() * 1000) - 3_600_000


def reading(seq: int) -> bytes:
    return telemetry(DEVICE, seq, BASE_MS + seq * 1000, pct=100 - seq / 20)


def stored_seqs(influx: InfluxServer, db: str) -> list[int]:
    try:
        rows = influx.rows(f"SELECT seq, pct FROM battery WHERE device = '{DEVICE}'", db)
    except (ServerError, OSError):  # InfluxDB being restarted
        return []
    return [r["seq"] for r in rows]


def assert_all_exactly_once(influx: InfluxServer, db: str) -> None:
    def all_stored() -> list[int]:
        seqs = stored_seqs(influx, db)
        return seqs if len(seqs) >= N else []

    seqs = wait_until(
        all_stored,
        timeout=90,
        message=f"all {N} readings stored",
    )
    assert sorted(seqs) == list(range(1, N + 1))
    # Stored exactly once: one point per seq, and its timestamp is the device's.
    rows = influx.rows(f"SELECT count(pct) FROM battery WHERE device = '{DEVICE}'", db)
    assert rows[0]["count"] == N


def test_influxdb_down_for_60_s_while_1000_readings_flow(tmp_path, mqtt_broker, make_influx):
    influx = make_influx()
    settings = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database="outage")
    )
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        pub.publish(TOPIC, reading(1))
        wait_until(
            lambda: stored_seqs(influx, "outage") == [1], timeout=20, message="first reading stored"
        )
        influx.stop()
        down_at = time.monotonic()
        for seq in range(2, N + 1):
            pub.publish(TOPIC, reading(seq))
            if seq % 50 == 0:
                time.sleep(1.0)  # spread the flow over the outage, ~20 s of it
        wait_until(
            lambda: collector.ingest.counters.accepted >= N,
            timeout=60,
            message="all readings spooled",
        )
        assert stored_seqs(influx, "outage") == []  # really down
        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))  # the outage lasts 60 s
        influx.start()
        assert_all_exactly_once(influx, "outage")
        assert collector.writer.counters.retries > 0


def test_collector_killed_mid_stream_and_started_again(tmp_path, mqtt_broker, make_influx):
    influx = make_influx()
    config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database="killed")
    settings = settings_from(config)
    argv = [str(Path(sys.executable).with_name("fleet")), "collector", "--config", str(config)]
    log = tmp_path / "collector.log"

    def start() -> subprocess.Popen[bytes]:
        since = mqtt_broker.log_offset()
        proc = spawn(argv, log)
        mqtt_broker.wait_subscribed(
            settings.mqtt.client_id, "owntracks/+/+", since=since, timeout=20
        )
        return proc

    proc = start()
    try:
        with publisher(settings) as pub:
            for seq in range(1, N + 1):
                pub.publish(TOPIC, reading(seq))
                if seq == 300:
                    wait_until(
                        lambda: len(stored_seqs(influx, "killed")) >= 100,
                        timeout=30,
                        message="some stored",
                    )
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                if seq == 600:
                    proc = start()
                if seq % 100 == 0:
                    time.sleep(0.2)
        assert_all_exactly_once(influx, "killed")
        assert stop_process(proc) == 0, tail(log)
    finally:
        stop_process(proc)


def test_mosquitto_restarted_mid_stream(tmp_path, make_broker, influx, tmp_db):
    broker = make_broker()
    settings = settings_from(write_config(tmp_path, broker=broker, influx=influx, database=tmp_db))
    with running_collector(settings, broker), publisher(settings) as pub:
        for seq in range(1, N + 1):
            pub.publish(TOPIC, reading(seq))
            if seq == 400:
                broker.restart()
            if seq % 100 == 0:
                time.sleep(0.2)
        assert_all_exactly_once(influx, tmp_db)
