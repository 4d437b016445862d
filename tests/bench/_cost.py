"""Scenario 5 of bench_collector.py: the collector's CPU cost per device-reading.

One `fleet collector` process (as systemd runs it) on a real Mosquitto and InfluxDB; the paced
publisher steps through fleets of 0, 250, 500, 1,000 and 2,000 devices, each reporting at 1 Hz.
At each step, after a warm-up, the collector's own CPU (user + system, /proc) is read over a
window and divided by the readings InfluxDB gained in it. A least-squares line through the
steps gives the model an operator sizes a box with:

    CPU share of one core = fixed + readings per second x cost per reading

The publisher runs on the same cores; only the collector's process is counted.
"""

from __future__ import annotations

import time
from pathlib import Path

from fleet.config import load_settings
from fleet.daemon import wire
from tests.bench._common import (
    CollectorProcess,
    Publisher,
    Table,
    battery_count,
    least_squares,
    process_cpu_s,
    write_bench_config,
)
from tests.bench._machine import PREFIX
from tests.harness.servers import InfluxServer, MosquittoServer

TELEMETRY = wire.subscriptions(PREFIX)[0]
STEPS = (0, 250, 500, 1000, 2000)


def scenario_cost(workdir: Path, window_s: float, table: Table) -> None:
    print(f"\n5. CPU per device-reading: {', '.join(map(str, STEPS))} devices x 1 Hz", flush=True)
    points: list[tuple[float, float]] = []  # (readings per second, cores)
    home = workdir / "s5"
    with MosquittoServer(home / "mosquitto") as broker, InfluxServer(home / "influx") as influx:
        config = write_bench_config(workdir, broker=broker, influx=influx, client_id="bench-s5")
        settings = load_settings(config, environ={})
        since = broker.log_offset()
        collector = CollectorProcess(config, home)
        try:
            broker.wait_subscribed(settings.mqtt.client_id, TELEMETRY, since=since, timeout=30)
            for devices in STEPS:
                publisher = None
                if devices:
                    publisher = Publisher(
                        "paced", "--config", str(config), "--devices", str(devices),
                        "--duration", str(window_s + 20),
                    )  # fmt: skip
                try:
                    time.sleep(8.0)  # warm-up: every device seen, batches at their size
                    if not collector.alive():
                        raise RuntimeError(f"the collector exited; see {collector.log_path}")
                    servers = (broker.pid or 0, influx.pid or 0)
                    servers0 = [process_cpu_s(p) for p in servers]
                    cpu0, stored0, t0 = (
                        process_cpu_s(collector.pid),
                        battery_count(influx),
                        time.monotonic(),
                    )
                    time.sleep(window_s)
                    cpu = process_cpu_s(collector.pid) - cpu0
                    broker_s, influx_s = (
                        process_cpu_s(p) - c for p, c in zip(servers, servers0, strict=True)
                    )
                    stored = battery_count(influx) - stored0
                    wall = time.monotonic() - t0
                finally:
                    if publisher is not None:
                        publisher.stop()
                rate, cores = stored / wall, cpu / wall
                points.append((rate, cores))
                per = f", {cpu / stored * 1e6:.0f} µs a reading" if stored else ""
                print(f"  {devices:>5} devices: {rate:,.0f} readings/s, {cores * 100:.1f} % of a core{per}", flush=True)  # fmt: skip
                table.add(
                    f"5 {devices:,} devices x 1 Hz: collector CPU",
                    f"{cores * 100:.1f} % of a core at {rate:,.0f} readings/s{per} "
                    f"(Mosquitto {broker_s / wall * 100:.1f} %, InfluxDB {influx_s / wall * 100:.1f} %)",
                )
        finally:
            collector.stop()
    fixed, per_reading = least_squares(points)
    table.add(
        "5 model: CPU = fixed + readings/s x cost",
        f"{fixed * 100:.1f} % of a core + {per_reading * 1e6:.0f} µs a reading",
    )
