"""Scenario 4 of the collector bench: draining a queue, the collector against bare paho.

N telemetry messages (QoS 1, 1,000 devices, seq numbered per device) are queued for a stopped
subscriber's persistent session on a private Mosquitto; then the subscriber starts and drains
them. The subscriber is first a bare paho client (tests/bench/_baseline.py), then the collector
as systemd runs it (`fleet collector --config ...`, its own process). See tests/bench/README.md.

`profile` attaches py-spy (`record --nonblocking --threads`, raw collapsed stacks) to the
collector for exactly the drain; tests/bench/profile_stages.py turns its output into µs per
message per stage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from fleet.config import load_settings
from fleet.daemon import wire
from tests.bench._baseline import forget_session
from tests.bench._common import (
    DATABASE,
    PYTHON,
    REPO,
    CollectorProcess,
    Publisher,
    RssSampler,
    Table,
    battery_count,
    write_bench_config,
)
from tests.bench._machine import PREFIX, machine_busy_s
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

TELEMETRY = wire.subscriptions(PREFIX)[0]
DEVICES = 1000
CLIENT_ID = "bench-drain"
RATIO_TARGET = 0.5  # issue 14; stretch 0.8
PEAK_RSS_TARGET_MB = 75.0


@dataclass
class CollectorDrain:
    seconds: float  # broker saw the collector connect -> all N queryable in InfluxDB
    cpu_s: float  # user + sys of the collector process over the same interval
    busy_s: float  # the whole machine's busy CPU seconds over it
    peak_rss_mb: float
    peak_split: str
    idle_rss_mb: float
    stop_code: int


def _queue(config: Path, n: int) -> None:
    """N messages published QoS 1 and acknowledged by the broker (its own process)."""
    summary = Publisher("burst", "--config", str(config), "--count", str(n)).result(900)
    print(f"  queued {n} messages in {summary['acked_s']:.1f} s", flush=True)


@dataclass
class BareDrain:
    rate: float  # msg/s, first to last arrival
    seconds: float  # connect to last arrival
    cpu_s: float  # the subscriber process's CPU over the same span
    busy_s: float  # the whole machine's busy CPU seconds over it


def _bare(mode: str, broker: MosquittoServer, client_id: str, *args: str) -> str:
    script = str(REPO / "tests" / "bench" / "_baseline.py")
    command = [PYTHON, script, mode, "--host", broker.host, "--port", str(broker.port)]
    command += ["--client-id", client_id, *args]
    done = subprocess.run(command, capture_output=True, cwd=REPO, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bare subscriber ({mode}) failed: {done.stderr.decode()[-1000:]}")
    return done.stdout.decode()


def bare_drain(broker: MosquittoServer, config: Path, n: int, receive_maximum: int) -> BareDrain:
    """Bare paho, in a process of its own, draining N queued messages."""
    client_id = "bench-drain-bare"
    window = ("--receive-maximum", str(receive_maximum))
    _bare("session", broker, client_id, *window)  # creates the session and its subscription
    _queue(config, n)
    out = _bare("drain", broker, client_id, *window, "--expected", str(n))
    forget_session(broker, client_id)
    summary = json.loads(out.strip().splitlines()[-1])
    return BareDrain(
        summary["rate"], summary["seconds"], summary["cpu_s"], summary["machine_busy_s"]
    )


def _connected(broker: MosquittoServer, client_id: str, since: int) -> bool:
    """The broker log (from byte `since`) shows `client_id` connecting: mosquitto starts
    sending the queued messages with its CONNACK."""
    with broker.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return any(
        "New client connected" in line and f" as {client_id} (" in line
        for line in text.splitlines()
    )


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy; or PY_SPY=/path/to/it)")
    extra = os.environ.get("PY_SPY_ARGS", "").split()  # e.g. --gil, --idle, --native
    command = [binary, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
    command += ["--threads", "--format", "raw", "--output", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _stored(influx: InfluxServer, n: float, collector: CollectorProcess) -> bool:
    """All n queryable, or the collector gone (which the caller then reports)."""
    return not collector.alive() or battery_count(influx) >= n


def _alive(collector: CollectorProcess) -> None:
    if not collector.alive():
        raise RuntimeError(f"the collector exited; see {collector.log_path}")


def collector_drain(
    broker: MosquittoServer, influx: InfluxServer, config: Path, n: int, profile: Path | None
) -> CollectorDrain:
    """The collector process draining N messages queued for its offline session."""
    home = config.parent
    settings = load_settings(config, environ={})
    since = broker.log_offset()
    first = CollectorProcess(config, home)
    try:
        broker.wait_subscribed(settings.mqtt.client_id, TELEMETRY, since=since, timeout=60)
        # Idle: subscribed, started, nothing to do; a few seconds for the start-up to settle
        # (the board's seed query, the first stats report's allocations).
        idle = RssSampler(first.pid, interval_s=0.25).start()
        deadline = time.monotonic() + 5
        wait_until(lambda: time.monotonic() >= deadline or not first.alive(), timeout=30)
        idle.stop()
        _alive(first)
        idle_rss = idle.samples[-1][1]
    finally:
        first.stop()
    _queue(config, n)
    since = broker.log_offset()
    collector = CollectorProcess(config, home)
    process = psutil.Process(collector.pid)
    rss = RssSampler(collector.pid, interval_s=0.1).start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_until(
            lambda: _connected(broker, CLIENT_ID, since) or not collector.alive(),
            timeout=60,
            interval=0.005,
            message="the collector connected",
        )
        _alive(collector)
        started, cpu_start, busy_start = time.perf_counter(), _cpu_s(process), machine_busy_s()
        if profile is not None:
            spy = _py_spy(collector.pid, profile)
        # Poll InfluxDB lightly until the end is near: the queries cost the same two cores.
        wait_until(lambda: _stored(influx, 0.9 * n, collector), timeout=900, interval=0.5)
        wait_until(lambda: _stored(influx, n, collector), timeout=300, interval=0.05)
        _alive(collector)
        stored, cpu_end, busy_end = time.perf_counter(), _cpu_s(process), machine_busy_s()
        if spy is not None and profile is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            _, err = spy.communicate(timeout=120)
            if not profile.exists():
                raise RuntimeError(f"py-spy wrote nothing: {err.decode()[-500:]}")
            spy = None
        peak = max(mb for _, mb in rss.samples)
    finally:
        if spy is not None:
            spy.kill()
        rss.stop()
        code = collector.stop()
    split = ", ".join(f"{k[3:].lower()} {v:.1f}" for k, v in rss.peak_parts.items())
    return CollectorDrain(
        stored - started, cpu_end - cpu_start, busy_end - busy_start, peak, split, idle_rss, code
    )


def exactly_once(influx: InfluxServer, n: int) -> tuple[bool, str]:
    """Every message stored once: N points, N distinct (device, seq), all devices."""
    total = battery_count(influx)
    rows = influx.rows("SELECT count(distinct(seq)) FROM battery GROUP BY device", DATABASE)
    distinct = sum(int(r["count"]) for r in rows)
    devices = len(rows)
    verdict = total == n and distinct == n and devices == min(n, DEVICES)
    return verdict, f"{total:,} points, {distinct:,} distinct (device, seq), {devices} devices"


def scenario_drain(
    workdir: Path, n: int, table: Table, *, rounds: int, profile: Path | None
) -> None:
    print(
        f"\n4. drain: {n} messages queued for a stopped subscriber, {rounds} round(s)", flush=True
    )
    for round_ in range(1, rounds + 1):
        tag = f"4.{round_}" if rounds > 1 else "4"
        home = workdir / f"s4-{round_}"
        with (
            MosquittoServer(home / "mosquitto") as broker,
            InfluxServer(home / "influx") as influx,
        ):
            config = write_bench_config(home, broker=broker, influx=influx, client_id=CLIENT_ID)
            receive_maximum = load_settings(config, environ={}).mqtt.receive_maximum
            bare = bare_drain(broker, config, n, receive_maximum)
            spy = None if profile is None else profile.with_name(f"{profile.name}.{round_}.txt")
            run = collector_drain(broker, influx, config, n, spy)
            once, counted = exactly_once(influx, n)
        rate = n / run.seconds
        ratio = rate / bare.rate
        cpu_us, bare_us = run.cpu_s / n * 1e6, bare.cpu_s / n * 1e6
        table.add(f"{tag} bare paho drain (QoS 1, MQTT 5, auto-ack)", f"{bare.rate:,.0f} msg/s")
        table.add(f"{tag} collector drain, connect to last point queryable", f"{rate:,.0f} msg/s")
        table.add(f"{tag} collector / bare", f"{ratio:.2f}", f">= {RATIO_TARGET}", ratio >= RATIO_TARGET)  # fmt: skip
        table.add(f"{tag} CPU (user+sys) per message, collector / bare", f"{cpu_us:.0f} / {bare_us:.0f} µs = {bare_us / cpu_us:.2f}")  # fmt: skip
        # What else kept the two cores busy (broker, InfluxDB, other work on the machine): a
        # rate measured while this is high was disturbed; compare it within the run only.
        others = (run.busy_s - run.cpu_s) / run.seconds, (bare.busy_s - bare.cpu_s) / bare.seconds
        table.add(f"{tag} rest of the machine busy during the drain, collector / bare", f"{others[0]:.2f} / {others[1]:.2f} cores")  # fmt: skip
        table.add(
            f"{tag} collector RSS peak during the drain",
            f"{run.peak_rss_mb:.1f} MB ({run.peak_split})",
            f"<= {PEAK_RSS_TARGET_MB:.0f} MB",
            run.peak_rss_mb <= PEAK_RSS_TARGET_MB,
        )
        table.add(f"{tag} collector RSS idle (subscribed, before the drain)", f"{run.idle_rss_mb:.1f} MB")  # fmt: skip
        table.add(f"{tag} stored exactly once", counted, f"{n:,} once each", once)
        if run.stop_code != 0:
            raise RuntimeError(f"the collector exited with {run.stop_code} on SIGTERM")
        if spy is not None:
            print(f"  py-spy profile: {spy}", flush=True)
