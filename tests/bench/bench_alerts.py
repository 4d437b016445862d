"""Alert latency: telemetry published -> the retained alert message at a subscriber.

    .venv/bin/python tests/bench/bench_alerts.py [--count 200] [--keep]

A private Mosquitto and InfluxDB (tests/harness) and the real collector in-process with its
production defaults (spool fsync on, alert state in SQLite with synchronous=FULL) and its real
clock. One Segway alternates readings at 9 % (battery_critical fires at once) and 50 % (it
resolves); each reading is published only after the previous alert arrived, so every latency is
one reading's own: from just before `publish` to the alert JSON's arrival in a subscriber's
callback (both on the bench's monotonic clock). The baseline is the bare MQTT round trip on the
same broker in the same run: the same publisher and subscriber links, a QoS 1 message to a topic
of its own. Target: p99 <= 100 ms.

The collector writes twice (PUBACK of the reading, then the alert PUBLISH) without reading in
between; without TCP_NODELAY Nagle's algorithm meets the peer's delayed ACK and each hop waits
~40 ms. So the collector's MQTT link sets TCP_NODELAY, and the test broker (like the deployed one
should) runs with `set_tcp_nodelay true`. Prints the figures; exits non-zero only when the bench
itself fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleet.config import load_settings
from fleet.daemon import wire
from fleet.daemon.collector.app import Collector
from fleet.daemon.mqtt import Inbound, MqttLink
from tests.bench._common import Table, machine, percentile, write_bench_config
from tests.bench._machine import PREFIX
from tests.harness.servers import InfluxServer, MosquittoServer

DEVICE = "sw-bench"
SITE = "allingtown"
RULE = "battery_critical"
ECHO_TOPIC = "bench/echo"
TARGET_P99_MS = 100.0
WARMUP = 10
TIMEOUT_S = 10.0


class Arrivals:
    """The next message on any subscribed topic, with its arrival time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._got: list[tuple[float, Inbound]] = []

    def on_message(self, message: Inbound) -> None:
        now = time.perf_counter()
        with self._cond:
            self._got.append((now, message))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._got.clear()

    def wait_for(self, topic: str, state: str | None = None) -> float:
        """Arrival time of the first message on `topic` (with alert `state`) since `clear`."""
        deadline = time.monotonic() + TIMEOUT_S
        with self._cond:
            while True:
                for at, message in self._got:
                    if message.topic == topic and (
                        state is None or json.loads(message.payload)["state"] == state
                    ):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"nothing on {topic} (state {state}) in {TIMEOUT_S} s")
                self._cond.wait(left)


def reading(seq: int, ts_ms: int, pct: float) -> bytes:
    return json.dumps(
        {
            "schema": 1,
            "device": DEVICE,
            "seq": seq,
            "ts": ts_ms / 1000,
            "battery": {"pct": pct, "charging": False, "voltage_v": 60.0, "temp_c": 24.5},
            "status": {"state": "riding", "error_code": 0},
        }
    ).encode()


def summary(table: Table, name: str, values_ms: list[float], target: bool) -> None:
    p50, p99 = percentile(values_ms, 0.50), percentile(values_ms, 0.99)
    table.add(f"{name} p50", f"{p50:.1f} ms")
    table.add(
        f"{name} p99",
        f"{p99:.1f} ms",
        f"<= {TARGET_P99_MS:.0f} ms" if target else "",
        p99 <= TARGET_P99_MS if target else None,
    )
    table.add(f"{name} max", f"{max(values_ms):.1f} ms (n = {len(values_ms)})")


def run(workdir: Path, count: int) -> Table:
    table = Table()
    with (
        MosquittoServer(workdir / "mosquitto") as broker,
        InfluxServer(workdir / "influx") as db,
    ):
        config = write_bench_config(
            workdir, broker=broker, influx=db, client_id="bench-alerts", alerts="shifts = []"
        )
        settings = load_settings(config, environ={})
        alert_topic = wire.alert_topic(PREFIX, SITE, DEVICE, RULE)
        telemetry_topic = wire.telemetry_topic(PREFIX, SITE, "segway", DEVICE)
        arrivals = Arrivals()
        since = broker.log_offset()
        sub = MqttLink(
            settings.mqtt,
            client_id="bench-alert-sub",
            persistent=False,
            subscriptions=[alert_topic, ECHO_TOPIC],
            on_message=arrivals.on_message,
        )
        pub = MqttLink(settings.mqtt, client_id="bench-alert-pub", persistent=False)
        collector = Collector(settings)
        undo_sub, undo_pub = sub.start(), pub.start()
        undo_collector = collector.start()
        try:
            if not pub.wait_connected(10):
                raise RuntimeError("publisher could not connect")
            for client, topic in (
                ("bench-alert-sub", ECHO_TOPIC),
                ("bench-alert-sub", alert_topic),
                ("bench-alerts", wire.subscriptions(PREFIX)[0]),
            ):
                deadline = time.monotonic() + 10
                while not broker.subscribed(client, topic, since=since):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{client} did not subscribe to {topic}")
                    time.sleep(0.05)

            baseline: list[float] = []
            for i in range(WARMUP + count):
                arrivals.clear()
                t0 = time.perf_counter()
                pub.publish(ECHO_TOPIC, b"x" * 200, qos=1)
                latency = (arrivals.wait_for(ECHO_TOPIC) - t0) * 1000
                if i >= WARMUP:
                    baseline.append(latency)

            fire: list[float] = []
            resolve: list[float] = []
            last_ts = 0
            for i in range(WARMUP + count):
                firing = i % 2 == 0
                last_ts = max(last_ts + 1, int(time.time() * 1000))
                payload = reading(i + 1, last_ts, 9.0 if firing else 50.0)
                arrivals.clear()
                t0 = time.perf_counter()
                pub.publish(telemetry_topic, payload, qos=1)
                at = arrivals.wait_for(alert_topic, "firing" if firing else "resolved")
                if i >= WARMUP:
                    (fire if firing else resolve).append((at - t0) * 1000)
        finally:
            undo_collector()
            undo_pub()
            undo_sub()

    print(f"\n{machine()}; {count} readings after {WARMUP} warm-up", flush=True)
    summary(table, "baseline MQTT round trip", baseline, target=False)
    summary(table, "reading -> alert (fire + resolve)", fire + resolve, target=True)
    summary(table, "reading -> alert fires", fire, target=False)
    summary(table, "reading -> alert resolves", resolve, target=False)
    excess = percentile(fire + resolve, 0.5) - percentile(baseline, 0.5)
    table.add("collector's share at p50 (alert p50 - baseline p50)", f"{excess:.1f} ms")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="alert-triggering readings")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        table = run(workdir, args.count)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
