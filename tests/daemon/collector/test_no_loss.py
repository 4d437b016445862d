"""No reading lost, checked by seq, while the parts around the collector fail.

Each scenario publishes 1,000 numbered readings of one device with QoS 1 and
distinct timestamps, breaks something mid-stream, and then requires InfluxDB
to hold every seq exactly once.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.process import spawn, stop_process, tail
from tests.harness.servers import InfluxServer, MosquittoServer, ServerError
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


def assert_all_exactly_once(influx: InfluxServer, db: str, n: int = N) -> None:
    def all_stored() -> list[int]:
        seqs = stored_seqs(influx, db)
        return seqs if len(seqs) >= n else []

    seqs = wait_until(all_stored, timeout=90, message=f"all {n} readings stored")
    assert sorted(seqs) == list(range(1, n + 1))
    # Stored exactly once: one point per seq, and its timestamp is the device's.
    rows = influx.rows(f"SELECT count(pct) FROM battery WHERE device = '{DEVICE}'", db)
    assert rows[0]["count"] == n


def spooled_readings(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM spool WHERE topic = ?", (TOPIC,)).fetchone()
    return int(count)


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


class CollectorProcess:
    """`fleet collector` as a child process, the way systemd runs it."""

    def __init__(
        self, tmp_path: Path, broker: MosquittoServer, influx: InfluxServer, db: str
    ) -> None:
        self.config = write_config(tmp_path, broker=broker, influx=influx, database=db)
        self.settings = settings_from(self.config)
        self.spool = self.settings.spool.path
        self.log = tmp_path / "collector.log"
        self._broker = broker

    def start(self) -> subprocess.Popen[bytes]:
        fleet = str(Path(sys.executable).with_name("fleet"))
        since = self._broker.log_offset()
        proc = spawn([fleet, "collector", "--config", str(self.config)], self.log)
        self._broker.wait_subscribed(
            self.settings.mqtt.client_id, "owntracks/+/+", since=since, timeout=20
        )
        return proc


def test_collector_killed_mid_stream_and_started_again(tmp_path, mqtt_broker, make_influx):
    influx = make_influx()
    collector = CollectorProcess(tmp_path, mqtt_broker, influx, "killed")
    settings, log, start = collector.settings, collector.log, collector.start
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


def test_sigterm_leaves_what_cannot_be_written_in_the_spool(tmp_path, mqtt_broker, make_influx):
    influx = make_influx()
    collector = CollectorProcess(tmp_path, mqtt_broker, influx, "sigterm")
    proc = collector.start()
    try:
        influx.stop()
        with publisher(collector.settings) as pub:
            for seq in range(1, 101):
                pub.publish(TOPIC, reading(seq))
        wait_until(
            lambda: spooled_readings(collector.spool) == 100, timeout=30, message="100 spooled"
        )
        assert stop_process(proc, timeout=30) == 0, tail(collector.log)
        assert spooled_readings(collector.spool) == 100  # kept, not dropped, not half-written
        influx.start()
        proc = collector.start()
        assert_all_exactly_once(influx, "sigterm", n=100)
        wait_until(
            lambda: spooled_readings(collector.spool) == 0, timeout=30, message="spool drained"
        )
    finally:
        stop_process(proc)
