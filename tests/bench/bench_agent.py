"""Agent CPU at 1 Hz polling of many emulated Ninebot scooters on real PTYs, against a bare loop.

    .venv/bin/python tests/bench/bench_agent.py [--devices 100] [--seconds 30] [--quick]

Three processes: the scooter emulators (tests/drivers/emulators/ninebot.py, one PTY pair and one
thread per scooter), then, one after the other against the same emulators:

- baseline: a bare asyncio loop that opens every PTY with the same serial transport as the
  driver and, once a second, sends each scooter the driver's own read requests and reads the
  replies - the serial I/O the job cannot avoid, nothing else;
- `fleet agent` as systemd runs it: one `ninebot_serial` driver per scooter at
  `poll_interval_s = 1.0`, production settings (fsync'd outbox, INFO logging), publishing to a
  private Mosquitto.

CPU = (user + system time of the process) / wall time over the window, after a warm-up; 100 %
is one core. Target: the agent at 100 devices <= 5 % of one core. Prints the figures; exits
non-zero only when the bench itself fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil

TARGET_PCT = 5.0
WARMUP_S = 5.0
PYTHON = sys.executable
FLEET = str(Path(sys.executable).with_name("fleet"))
SCRIPT = str(Path(__file__).resolve())


def port_path(directory: Path, index: int) -> Path:
    return directory / f"ttyNB{index:03d}"


# --- the emulator process -----------------------------------------------------------------------


def emulate(devices: int, directory: Path) -> None:
    from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState

    directory.mkdir(parents=True, exist_ok=True)
    scooters = [
        PtyScooter(port_path(directory, i), NinebotEmulator(ScooterState(model="es")))
        for i in range(devices)
    ]
    (directory / "ready").write_text(str(len(scooters)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for scooter in scooters:
        with contextlib.suppress(OSError):
            scooter.close()


# --- the baseline process -----------------------------------------------------------------------


async def _bare_poller(port: str, start_delay: float) -> None:
    import serial_asyncio_fast

    from fleet.drivers.ninebot.poll import HOST_SERIAL, encode_read, requests_for_cycle
    from fleet.drivers.ninebot.registers import MODELS

    model = MODELS["es"]
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=port, baudrate=115200)
    await asyncio.sleep(start_delay)
    loop = asyncio.get_running_loop()
    cycle = 0
    while True:
        started = loop.time()
        for req in requests_for_cycle(cycle):
            writer.write(encode_read(req, model, HOST_SERIAL))
            await writer.drain()
            # 5A A5 + len + src dst cmd arg + payload + 2 checksum bytes
            await asyncio.wait_for(reader.readexactly(9 + req.nbytes), 1.0)
        cycle += 1
        await asyncio.sleep(max(0.0, 1.0 - (loop.time() - started)))


def baseline(devices: int, directory: Path) -> None:
    async def main() -> None:
        ports = [str(port_path(directory, i)) for i in range(devices)]
        await asyncio.gather(*(_bare_poller(p, i / len(ports)) for i, p in enumerate(ports)))

    asyncio.run(main())


# --- the orchestrator ---------------------------------------------------------------------------


def cpu_pct(pid: int, seconds: float) -> float:
    proc = psutil.Process(pid)
    before, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, t1 = proc.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return float(100.0 * used / (t1 - t0))


def agent_config(work: Path, broker_port: int, devices: int, ports: Path) -> Path:
    drivers = "".join(
        f"""
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-{i + 1:04d}"
port = "{port_path(ports, i)}"
poll_interval_s = 1.0
"""
        for i in range(devices)
    )
    path = work / "agent.toml"
    path.write_text(
        f"""
log_level = "INFO"

[mqtt]
host = "127.0.0.1"
port = {broker_port}

[agent]
id = "bench"
outbox_path = "{work / "outbox.sqlite"}"
{drivers}
"""
    )
    return path


def run(devices: int, seconds: float, keep: bool) -> int:
    from fleet.config import load_settings
    from fleet.daemon.mqtt import Inbound, MqttLink
    from tests.harness.process import spawn, stop_process, tail
    from tests.harness.servers import MosquittoServer
    from tests.harness.waiting import wait_until

    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    ports = work / "ports"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{devices} emulated scooters, 1 Hz polling, {seconds:.0f} s window after {WARMUP_S} s")
    broker = MosquittoServer(work / "mosquitto").start()
    emulators = spawn([PYTHON, SCRIPT, "--emulate", str(devices), str(ports)], work / "emu.log")
    try:
        wait_until(
            lambda: (ports / "ready").exists() or emulators.poll() is not None,
            timeout=60,
            message="emulators ready",
        )
        if emulators.poll() is not None:
            print(tail(work / "emu.log"))
            return 1

        # 1. baseline
        bare = spawn([PYTHON, SCRIPT, "--baseline", str(devices), str(ports)], work / "base.log")
        time.sleep(WARMUP_S)  # a bench window, not a wait for a condition
        if bare.poll() is not None:
            print(tail(work / "base.log"))
            return 1
        base_pct = cpu_pct(bare.pid, seconds)
        stop_process(bare, timeout=10)
        print(f"baseline (bare PTY polling loop): {base_pct:.2f} % of one core")

        # 2. the agent
        config = agent_config(work, broker.port, devices, ports)
        settings = load_settings(config, environ={})
        received: list[int] = [0]
        lock = threading.Lock()

        def count(message: Inbound) -> None:
            with lock:
                received[0] += 1

        sub = MqttLink(
            settings.mqtt,
            client_id="bench-sub",
            persistent=False,
            subscriptions=["fleet/v1/+/+/+/telemetry"],
            on_message=count,
        )
        sub.start()
        agent = spawn([FLEET, "agent", "--config", str(config)], work / "agent.log")
        wait_until(
            lambda: received[0] >= devices or agent.poll() is not None,
            timeout=60,
            message="first readings of every scooter",
        )
        if agent.poll() is not None:
            print(tail(work / "agent.log"))
            return 1
        time.sleep(WARMUP_S)
        with lock:
            start_count = received[0]
        agent_pct = cpu_pct(agent.pid, seconds)
        with lock:
            rate = (received[0] - start_count) / seconds
        code = stop_process(agent, timeout=30)
        sub.stop()
        errors = [
            line for line in (work / "agent.log").read_text().splitlines() if " ERROR " in line
        ]
        verdict = "ok" if agent_pct <= TARGET_PCT else "MISSED"
        print(f"agent: {agent_pct:.2f} % of one core (target <= {TARGET_PCT} %: {verdict})")
        print(f"agent minus baseline: {agent_pct - base_pct:.2f} % of one core")
        print(f"readings on the broker: {rate:.1f}/s (expected ~{devices}/s)")
        print(f"agent exit code {code}; {len(errors)} ERROR lines in its log")
        print()
        print("| devices | baseline CPU | agent CPU | target | readings/s |")
        print("|---|---|---|---|---|")
        print(
            f"| {devices} | {base_pct:.2f} % | {agent_pct:.2f} % | <= {TARGET_PCT} % "
            f"({verdict}) | {rate:.1f} |"
        )
        return 0
    finally:
        stop_process(emulators, timeout=10)
        broker.stop()
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 s window")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--emulate", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulate:
        emulate(int(args.emulate[0]), Path(args.emulate[1]))
        return 0
    if args.baseline:
        baseline(int(args.baseline[0]), Path(args.baseline[1]))
        return 0
    return run(args.devices, 10.0 if args.quick else args.seconds, args.keep)


if __name__ == "__main__":
    sys.exit(main())
