"""Agent CPU polling many emulated Ninebot scooters on real PTYs, against a bare loop.

    .venv/bin/python tests/bench/bench_agent.py [--devices 100] [--seconds 30] [--quick]
        [--mix both|riding|station] [--windows 3] [--tree NAME=PATH ...] [--rounds 1]
        [--profile DIR]

Processes: the scooter emulators (tests/drivers/emulators/ninebot.py, one PTY pair and one
thread per scooter), then, one after the other against the same emulators:

- baseline: a bare asyncio loop that opens every PTY with the driver's own port I/O
  (`serial.open_port` + `PortLink`) and, on the driver's shared 1 s ticks, sends each scooter
  the driver's own read requests (poll.SCHEDULE, pre-encoded) and waits for each reply to be
  framed - the serial I/O the job cannot avoid at 1 Hz, nothing else (no decoding, no
  reading, no outbox, no MQTT);
- `fleet agent` as systemd runs it (`python -m fleet.daemon.cli agent`): one
  `ninebot_serial` driver per scooter with the production defaults (`poll_interval_s = 1.0`,
  idle and charging 10 s, fsync'd outbox, INFO logging), publishing to a private Mosquitto.

Before and after a change, in one run: `--tree before=/tmp/agent-before --tree after=PATH`
(e.g. `git archive HEAD | tar -x -C /tmp/agent-before`) starts each tree's agent in turn on
the same emulators and broker, `--rounds` times, so both see the same machine load; each
tree's median and its ratio to the first tree's are printed. `--profile DIR` adds one window
per tree under py-spy (`--gil --threads`, raw) after the measured ones.

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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil

TARGET_PCT = 5.0
RIDING_INTERVAL_S, SLOW_INTERVAL_S = 1.0, 10.0  # the driver's defaults
STATION_MIX = (0.2, 0.3, 0.5)  # shares of riding, standing and charging scooters
WARMUP_S = 5.0
PYTHON = sys.executable
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


def run(
    devices: int,
    seconds: float,
    windows: int,
    mixes: list[str],
    keep: bool,
    trees: list[tuple[str, Path | None]],
    rounds: int,
    profile: Path | None,
) -> int:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{devices} emulated scooters, {windows} window(s) of {seconds:.0f} s after {WARMUP_S} s")
    if len(trees) > 1 or rounds > 1:
        names = ", ".join(name for name, _ in trees)
        print(f"trees {names}: alternated, {rounds} round(s), each agent on the same emulators")
    rows: list[str] = []
    for mix in mixes:
        code = run_mix(devices, seconds, windows, mix, keep, rows, trees, rounds, profile)
        if code:
            return code
    print()
    print(
        "| mix | tree | baseline (bare 1 Hz I/O) | agent CPU, median (min-max) "
        "| its event loop thread | target | readings/s | load average |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


@dataclass
class TreeRun:
    """What one source tree's agent measured over the rounds of a mix."""

    name: str
    path: Path | None  # None: the checkout this script is in (the installed package)
    figures: list[tuple[float, float]] = field(default_factory=list)  # (process, loop thread)
    readings: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-min load average per window

    def cwd(self) -> Path:
        # `python -m` puts its working directory first on sys.path: the tree's own.
        return self.path or Path(SCRIPT).parents[2]

    def env(self) -> dict[str, str] | None:
        if self.path is None:
            return None
        # Ahead of the editable install's finder: `fleet` is imported from this tree.
        return {**os.environ, "PYTHONPATH": str(self.path)}


def run_mix(
    devices: int,
    seconds: float,
    windows: int,
    mix: str,
    keep: bool,
    rows: list[str],
    trees: list[tuple[str, Path | None]],
    rounds: int,
    profile: Path | None,
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
    sub: MqttLink | None = None
    try:
        wait_until(
            lambda: (ports / "ready").exists() or emulators.poll() is not None,
            timeout=60,
            message="emulators ready",
        )
        if emulators.poll() is not None:
            print(tail(work / "emu.log"))
            return 1

        def measure_baseline() -> float | None:
            bare = spawn(
                [PYTHON, SCRIPT, "--baseline", str(devices), str(ports)], work / "base.log"
            )
            time.sleep(WARMUP_S)  # a bench window, not a wait for a condition
            if bare.poll() is not None:
                print(tail(work / "base.log"))
                return None
            pct, _ = cpu_pct(bare.pid, seconds)
            stop_process(bare, timeout=10)
            print(f"baseline (bare 1 Hz polling loop): {pct:.2f} % of one core")
            return pct

        base = [measure_baseline()]
        if base[0] is None:
            return 1

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
        runs = [TreeRun(name, path) for name, path in trees]
        for tree in runs:
            # Which `fleet` the agent will import, seen the way it is started.
            where = subprocess.run(
                [PYTHON, "-c", "import fleet; print(fleet.__file__)"],
                env=tree.env(),
                cwd=tree.cwd(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            print(f"tree {tree.name}: {where}")
        for turn in range(rounds):
            for tree in runs:
                with lock:
                    first = received[0]
                label = f" [{tree.name}, round {turn + 1}]" if len(runs) > 1 or rounds > 1 else ""
                agent = spawn(
                    [PYTHON, "-m", "fleet.daemon.cli", "agent", "--config", str(config)],
                    work / f"agent-{tree.name}.log",
                    env=tree.env(),
                    cwd=tree.cwd(),
                )

                def first_readings(first: int = first, agent: Popen[bytes] = agent) -> bool:
                    return received[0] >= first + devices or agent.poll() is not None

                wait_until(
                    first_readings,
                    timeout=60,
                    message="first readings of every scooter",
                )
                if agent.poll() is not None:
                    print(tail(work / f"agent-{tree.name}.log"))
                    return 1
                time.sleep(WARMUP_S)
                with lock:
                    start_count = received[0]
                for _ in range(windows):
                    tree.figures.append(cpu_pct(agent.pid, seconds))
                    tree.loads.append(os.getloadavg()[0])
                    print(
                        f"  agent{label}: {tree.figures[-1][0]:.2f} % (event loop thread "
                        f"{tree.figures[-1][1]:.2f} %, load {tree.loads[-1]:.2f})"
                    )
                with lock:
                    tree.readings += received[0] - start_count
                tree.seconds += seconds * windows
                if profile is not None and turn == 0:
                    record_profile(agent.pid, profile / f"{mix}-{tree.name}.txt", seconds)
                code = stop_process(agent, timeout=30)
                if code:
                    print(f"agent exit code {code}")
                    print(tail(work / f"agent-{tree.name}.log"))
                    return 1
        base.append(measure_baseline())
        for tree in runs:
            tree.errors = [
                line
                for line in (work / f"agent-{tree.name}.log").read_text().splitlines()
                if " ERROR " in line
            ]
            rows.append(report(tree, devices, mix, base, runs[0]))
        return 0
    finally:
        if sub is not None:
            sub.stop()
        stop_process(emulators, timeout=10)
        broker.stop()
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(tree: TreeRun, devices: int, mix: str, base: list[float | None], first: TreeRun) -> str:
    """Prints the figures of one tree's agent; returns its row of the markdown table."""
    pcts = sorted(f[0] for f in tree.figures)
    loops = sorted(f[1] for f in tree.figures)
    median, loop_median = pcts[len(pcts) // 2], loops[len(loops) // 2]
    verdict = "ok" if median <= TARGET_PCT else "MISSED"
    rate = tree.readings / tree.seconds
    ratio = ""
    if tree is not first:
        ref = sorted(f[0] for f in first.figures)
        ratio = f", {median / ref[len(ref) // 2]:.2f} x {first.name}'s median"
    print(
        f"agent {tree.name}: median {median:.2f} % of one core, {pcts[0]:.2f}-{pcts[-1]:.2f} "
        f"over {len(pcts)} window(s) (target <= {TARGET_PCT} %: {verdict}){ratio}"
    )
    print(f"  readings on the broker: {rate:.1f}/s (expected ~{expected_rate(devices, mix):.0f}/s)")
    print(f"  {len(tree.errors)} ERROR lines in its log")
    for line in tree.errors[:3]:
        print(f"    {line}")
    bases = " / ".join(f"{b:.2f}" for b in base if b is not None)
    loads = sorted(tree.loads)
    return (
        f"| {mix} ({devices}) | {tree.name} | {bases} % | {median:.2f} % ({pcts[0]:.2f}-"
        f"{pcts[-1]:.2f}) | {loop_median:.2f} % | <= {TARGET_PCT} % ({verdict}) | {rate:.1f} "
        f"| {loads[0]:.2f}-{loads[-1]:.2f} |"
    )


def record_profile(pid: int, out: Path, seconds: float) -> None:
    """py-spy (`--gil`: only the thread holding the interpreter lock) over one window."""
    spy = os.environ.get("PY_SPY", "/tmp/pyspy/bin/py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--gil"]
    argv += ["--threads", "--duration", str(round(seconds)), "--output", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    print(f"  profile: {out} (py-spy exit {result.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 s windows")
    parser.add_argument("--windows", type=int, default=3, help="windows measured per mix")
    parser.add_argument("--mix", choices=("both", "riding", "station"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--tree",
        action="append",
        metavar="NAME=PATH",
        help="a source tree to run `fleet agent` from (repeat: alternated on the same "
        "emulators); default the checkout",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the trees per mix")
    parser.add_argument("--profile", type=Path, help="py-spy one window per tree into DIR")
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
    trees: list[tuple[str, Path | None]] = [("checkout", None)]
    if args.tree:
        trees = []
        for spec in args.tree:
            name, sep, path = spec.partition("=")
            if not sep or not (Path(path) / "fleet" / "daemon").is_dir():
                parser.error(f"--tree {spec}: want NAME=PATH of a tree with fleet/daemon")
            trees.append((name, Path(path).resolve()))
    seconds = 10.0 if args.quick else args.seconds
    return run(
        args.devices, seconds, args.windows, mixes, args.keep, trees, args.rounds, args.profile
    )


if __name__ == "__main__":
    sys.exit(main())
