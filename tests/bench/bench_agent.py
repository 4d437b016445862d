"""Agent CPU polling many emulated Ninebot scooters on real PTYs, against a bare loop.

    .venv/bin/python tests/bench/bench_agent.py [--devices 100] [--seconds 30] [--quick]
        [--mix both|riding|station] [--windows 3]

Processes: the scooter emulators (tests/drivers/emulators/ninebot.py, one PTY pair and one
thread per scooter), then, one after the other against the same emulators:

- baseline: a bare asyncio loop that opens every PTY with the driver's own port I/O
  (`serial.open_port` + `PortLink`) and, on the driver's shared 1 s ticks, sends each scooter
  the driver's own read requests (poll.SCHEDULE, pre-encoded) and waits for each reply to be
  framed - the serial I/O the job cannot avoid at 1 Hz, nothing else (no decoding, no
  reading, no outbox, no MQTT);
- `fleet agent` as systemd runs it: one `ninebot_serial` driver per scooter with the
  production defaults (`poll_interval_s = 1.0`, idle and charging 10 s, fsync'd outbox, INFO
  logging), publishing to a private Mosquitto.

Two mixes of scooter states (`--mix both`, the default, runs each on fresh emulators):

- `riding`: every scooter rides, so every one is polled at 1 Hz - the worst case;
- `station`: what a sub-station's docks hold: 20 % riding (1 Hz), 30 % standing (idle, every
  10 s), 50 % charging (every 10 s).

CPU = (user + system time of the process) / wall time over a window, after a warm-up; 100 %
is one core. The agent is measured over `--windows` consecutive windows (the machine is
shared: the spread says how much to trust one figure). Target: the agent at 100 devices
<= 5 % of one core. Prints the figures; exits non-zero only when the bench itself fails.
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
RIDING_INTERVAL_S, SLOW_INTERVAL_S = 1.0, 10.0  # the driver's defaults
STATION_MIX = (0.2, 0.3, 0.5)  # shares of riding, standing and charging scooters
WARMUP_S = 5.0
PYTHON = sys.executable
FLEET = str(Path(sys.executable).with_name("fleet"))
SCRIPT = str(Path(__file__).resolve())


def port_path(directory: Path, index: int) -> Path:
    return directory / f"ttyNB{index:03d}"


def states(devices: int, mix: str) -> list[str]:
    """Each scooter's state in `mix` (riding first)."""
    if mix == "riding":
        return ["riding"] * devices
    riding = round(devices * STATION_MIX[0])
    idle = round(devices * STATION_MIX[1])
    return ["riding"] * riding + ["idle"] * idle + ["charging"] * (devices - riding - idle)


def expected_rate(devices: int, mix: str) -> float:
    return sum(
        1 / (RIDING_INTERVAL_S if s == "riding" else SLOW_INTERVAL_S) for s in states(devices, mix)
    )


# --- the emulator process -----------------------------------------------------------------------


def emulate(devices: int, directory: Path, mix: str) -> None:
    from tests.drivers.emulators.ninebot import NinebotEmulator, PtyScooter, ScooterState

    def state(kind: str) -> ScooterState:
        if kind == "riding":
            return ScooterState(model="es")
        if kind == "idle":
            return ScooterState(model="es", speed_kmh=0.0)
        return ScooterState(
            model="es", speed_kmh=0.0, charging=True, charger_plugged=True, current_a=2.1
        )

    directory.mkdir(parents=True, exist_ok=True)
    scooters = [
        PtyScooter(port_path(directory, i), NinebotEmulator(state(kind)))
        for i, kind in enumerate(states(devices, mix))
    ]
    (directory / "ready").write_text(str(len(scooters)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for scooter in scooters:
        with contextlib.suppress(OSError):
            scooter.close()


# --- the baseline process -----------------------------------------------------------------------


async def _bare_poller(port: str) -> None:
    from fleet.drivers.ninebot.frames import FrameDecoder
    from fleet.drivers.ninebot.poll import HOST_SERIAL, encode_read, requests_for_cycle
    from fleet.drivers.ninebot.registers import MODELS
    from fleet.drivers.ninebot.serial import PortLink, open_port, until_next_tick

    model = MODELS["es"]
    loop = asyncio.get_running_loop()
    decoder = FrameDecoder()
    reply: list[asyncio.Future[None]] = [loop.create_future()]

    def consume(data: bytes) -> None:
        # Whole, checksummed frames: the least any reader of the bus does.
        if decoder.feed(data) and not reply[0].done():
            reply[0].set_result(None)

    link = PortLink(await open_port(port, 115200), consume)
    requests = [
        [encode_read(req, model, HOST_SERIAL) for req in requests_for_cycle(cycle)]
        for cycle in range(60)
    ]
    cycle = 0
    while True:
        # On the driver's shared ticks, so the loop wakes as often as the agent's does.
        now = loop.time()
        await asyncio.sleep(until_next_tick(now, now, RIDING_INTERVAL_S))
        for data in requests[cycle % 60]:
            reply[0] = loop.create_future()
            timer = loop.call_later(1.0, reply[0].cancel)
            link.write(data)
            with contextlib.suppress(asyncio.CancelledError):
                await reply[0]
            timer.cancel()
        cycle += 1


def baseline(devices: int, directory: Path) -> None:
    async def main() -> None:
        ports = [str(port_path(directory, i)) for i in range(devices)]
        await asyncio.gather(*(_bare_poller(p) for p in ports))

    asyncio.run(main())


# --- the orchestrator ---------------------------------------------------------------------------


def cpu_pct(pid: int, seconds: float) -> tuple[float, float]:
    """CPU of the process and of its main thread (the event loop), % of one core."""
    proc = psutil.Process(pid)

    def main_thread() -> float:
        return next((t.user_time + t.system_time for t in proc.threads() if t.id == pid), 0.0)

    before, main_before, t0 = proc.cpu_times(), main_thread(), time.monotonic()
    time.sleep(seconds)
    after, main_after, t1 = proc.cpu_times(), main_thread(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (t1 - t0), 100.0 * (main_after - main_before) / (t1 - t0)


def agent_config(work: Path, broker_port: int, devices: int, ports: Path) -> Path:
    drivers = "".join(
        f"""
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-{i + 1:04d}"
port = "{port_path(ports, i)}"
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


def run(devices: int, seconds: float, windows: int, mixes: list[str], keep: bool) -> int:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{devices} emulated scooters, {windows} window(s) of {seconds:.0f} s after {WARMUP_S} s")
    rows: list[str] = []
    for mix in mixes:
        code = run_mix(devices, seconds, windows, mix, keep, rows)
        if code:
            return code
    print()
    print(
        "| mix | baseline (bare 1 Hz I/O) | agent CPU, median (min-max) | its event loop thread "
        "| target | readings/s |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


def run_mix(
    devices: int, seconds: float, windows: int, mix: str, keep: bool, rows: list[str]
) -> int:
    from fleet.config import load_settings
    from fleet.daemon.mqtt import Inbound, MqttLink
    from tests.harness.process import spawn, stop_process, tail
    from tests.harness.servers import MosquittoServer
    from tests.harness.waiting import wait_until

    work = Path(tempfile.mkdtemp(prefix=f"bench-agent-{mix}-"))
    ports = work / "ports"
    kinds = states(devices, mix)
    shares = ", ".join(f"{kinds.count(k)} {k}" for k in ("riding", "idle", "charging"))
    print(f"\n== mix {mix}: {shares}")
    broker = MosquittoServer(work / "mosquitto").start()
    emulators = spawn(
        [PYTHON, SCRIPT, "--emulate", str(devices), str(ports), mix], work / "emu.log"
    )
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
        base_pct, _ = cpu_pct(bare.pid, seconds)
        stop_process(bare, timeout=10)
        print(f"baseline (bare 1 Hz polling loop): {base_pct:.2f} % of one core")

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
        figures: list[tuple[float, float]] = []
        with lock:
            start_count = received[0]
        for _ in range(windows):
            figures.append(cpu_pct(agent.pid, seconds))
            print(f"  agent: {figures[-1][0]:.2f} % (event loop thread {figures[-1][1]:.2f} %)")
        with lock:
            rate = (received[0] - start_count) / (seconds * windows)
        code = stop_process(agent, timeout=30)
        sub.stop()
        errors = [
            line for line in (work / "agent.log").read_text().splitlines() if " ERROR " in line
        ]
        pcts = sorted(f[0] for f in figures)
        loops = sorted(f[1] for f in figures)
        median, loop_median = pcts[len(pcts) // 2], loops[len(loops) // 2]
        verdict = "ok" if median <= TARGET_PCT else "MISSED"
        print(
            f"agent: median {median:.2f} % of one core, {pcts[0]:.2f}-{pcts[-1]:.2f} over "
            f"{windows} window(s) (target <= {TARGET_PCT} %: {verdict})"
        )
        expected = expected_rate(devices, mix)
        print(f"readings on the broker: {rate:.1f}/s (expected ~{expected:.0f}/s)")
        print(f"agent exit code {code}; {len(errors)} ERROR lines in its log")
        for line in errors[:3]:
            print(f"  {line}")
        rows.append(
            f"| {mix} ({devices}) | {base_pct:.2f} % | {median:.2f} % ({pcts[0]:.2f}-"
            f"{pcts[-1]:.2f}) | {loop_median:.2f} % | <= {TARGET_PCT} % ({verdict}) | {rate:.1f} |"
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
    parser.add_argument("--quick", action="store_true", help="10 s windows")
    parser.add_argument("--windows", type=int, default=3, help="windows measured per mix")
    parser.add_argument("--mix", choices=("both", "riding", "station"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--emulate", nargs=3, metavar=("N", "DIR", "MIX"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulate:
        emulate(int(args.emulate[0]), Path(args.emulate[1]), args.emulate[2])
        return 0
    if args.baseline:
        baseline(int(args.baseline[0]), Path(args.baseline[1]))
        return 0
    mixes = ["riding", "station"] if args.mix == "both" else [args.mix]
    return run(args.devices, 10.0 if args.quick else args.seconds, args.windows, mixes, args.keep)


if __name__ == "__main__":
    sys.exit(main())
