"""The alert engine alone (no servers), before and after, side by side in one run: CPU and wall
time per reading for `observe` on a 50,000-reading drain, and per tick at 1,000 and 10,000
devices.

    .venv/bin/python tests/bench/bench_alert_engine.py [--before REV] [--readings N] [--repeats N]

"Before" is the engine of git revision REV (default: the last commit before the engine judged
in batches and ticked from deadlines), read with `git show` and imported under another package
name; "after" is the working tree. Both write their state to a SQLite file in a temporary
directory with the production settings (fsync on). The readings are the drain bench's
(tests/bench/_common.Fleet: full battery + location + status, ~7 % of devices below 25 %, so
battery_low goes pending then fires and its value moves with every reading). "before" judges
a batch as the collector did, one `observe` (one store write) per reading; "after" with
`observe_batch`, one transaction per ingest batch (2,000).

The ticks: `steady` after one reading of every device since the last tick (the 1 Hz case:
every device's view is written), `quiet` with nothing heard since (what judging alone costs).
CPU time is the process's (user + sys: what holds the interpreter lock, plus SQLite), wall
includes the fsyncs. Each figure is the best of N repeats (the least disturbed on a shared
machine). Prints the figures; exits non-zero only when the bench itself fails.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleet.config.alerts import AlertSettings
from fleet.daemon.wire import Battery, DecodedReading, Location, State, Status
from tests.bench._common import SITES, Table, machine

REPO = Path(__file__).resolve().parents[2]
BEFORE = "b9652db"  # the last commit with the per-reading store write and the full-walk tick
OLD_PACKAGE = "fleet_alerts_before"
BATCH = 2_000
T0 = 1_796_000_000_000


def import_before(rev: str, into: Path) -> ModuleType:
    """daemon/alerts of `rev` as the package OLD_PACKAGE (its own modules, today's config)."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:daemon/alerts"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    package = into / OLD_PACKAGE
    package.mkdir(parents=True)
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run(
                ["git", "show", f"{rev}:daemon/alerts/{name}"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (package / name).write_text(source.replace("fleet.daemon.alerts", OLD_PACKAGE))
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{OLD_PACKAGE}.engine")


def devices(size: int) -> list[tuple[str, str, str]]:
    """(device, kind, site) as tests/bench/_common.Fleet names them."""
    half = (size + 1) // 2
    return [
        (f"sw-{i + 1:04d}", "segway", SITES[i % 2])
        if i < half
        else (f"hh-{i - half + 1:04d}", "handheld", SITES[i % 2])
        for i in range(size)
    ]


def reading(fleet: list[tuple[str, str, str]], index: int, seq: int, ts_ms: int) -> DecodedReading:
    """The values of tests/bench/_common.Fleet.message, already decoded."""
    device, kind, site = fleet[index]
    pct = 20.0 + (index * 7 + seq * 0.01) % 80
    return DecodedReading(
        site,
        kind,
        device,
        seq,
        ts_ms,
        Battery(pct=pct, voltage_v=60 + pct * 0.15, current_a=-3.2, temp_c=24.5, charging=False),
        Location(lat=41.26 + index * 1e-5, lon=-72.95 + index * 1e-5, accuracy_m=5.0),
        Status(state=State.RIDING, error_code=0, locked=False, rssi_dbm=-61, firmware="1.3.9"),
        "telemetry",
    )


def rounds(size: int, seconds: int) -> list[list[DecodedReading]]:
    """One reading of every device per second, for `seconds` seconds."""
    fleet = devices(size)
    return [
        [reading(fleet, i, s, T0 + s * 1000 + i % 1000) for i in range(size)]
        for s in range(seconds)
    ]


def engine(module: ModuleType, store_module: ModuleType, workdir: Path) -> Any:
    path = workdir / f"alerts-{time.monotonic_ns()}.sqlite"
    return module.AlertEngine(AlertSettings(), store=store_module.AlertStore(path))


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU s, wall s) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def observe_cost(make: Callable[[], Any], readings: list[DecodedReading], batched: bool):
    eng = make()

    def run() -> None:
        for k in range(0, len(readings), BATCH):
            batch = readings[k : k + BATCH]
            now = batch[-1].ts_ms + 300
            if batched:
                eng.observe_batch(batch, now)
            else:
                for r in batch:  # the old AlertService: one observe per reading
                    eng.observe(r, now)

    return timed(run)


def tick_cost(make: Callable[[], Any], size: int, batched: bool) -> tuple[float, float, float]:
    """(steady ms, quiet ms, CPU ms of the steady tick) per tick, best of the measured ones."""
    eng = make()
    secs = rounds(size, 8)
    steady, quiet, steady_cpu = [], [], []
    for s, batch in enumerate(secs):
        now = T0 + s * 1000 + 900
        if batched:
            eng.observe_batch(batch, now)
        else:
            for r in batch:
                eng.observe(r, now)
        cpu, wall = timed(partial(eng.tick, now + 50))
        _, wall_q = timed(partial(eng.tick, now + 80))
        if s >= 2:  # the first ticks start the engine and write every view once
            steady.append(wall)
            steady_cpu.append(cpu)
            quiet.append(wall_q)
    return min(steady) * 1e3, min(quiet) * 1e3, min(steady_cpu) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of 'before'")
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from fleet.daemon.alerts import engine as new_engine
    from fleet.daemon.alerts import store as new_store

    with tempfile.TemporaryDirectory(prefix="bench-alert-engine-") as tmp:
        workdir = Path(tmp)
        old_engine = import_before(args.before, workdir / "src")
        old_store = importlib.import_module(f"{OLD_PACKAGE}.store")
        sides = {
            "before": (lambda: engine(old_engine, old_store, workdir), False),
            "after": (lambda: engine(new_engine, new_store, workdir), True),
        }
        table = Table()
        print(f"{machine()}; before = {args.before}, after = working tree", flush=True)
        fleet_size = 1_000
        drain = [r for batch in rounds(fleet_size, args.readings // fleet_size) for r in batch]
        found: dict[str, tuple[float, float]] = {}
        for side, (make, batched) in sides.items():
            runs = [observe_cost(make, drain, batched) for _ in range(args.repeats)]
            cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
            found[side] = cpu, wall
            per = 1e6 / len(drain)
            table.add(f"observe, {side}: CPU per reading", f"{cpu * per:.1f} µs")
            table.add(f"observe, {side}: wall per reading", f"{wall * per:.1f} µs")
            print(f"observe {side}: {cpu * per:.1f} µs CPU, {wall * per:.1f} µs wall", flush=True)
        table.add("observe CPU, before / after", f"{found['before'][0] / found['after'][0]:.1f}x")
        for size in (1_000, 10_000):
            ticks: dict[str, tuple[float, float, float]] = {}
            for side, (make, batched) in sides.items():
                ticks[side] = tick_cost(make, size, batched)
                steady, quiet, cpu = ticks[side]
                table.add(f"tick at {size:,} devices, {side}: steady", f"{steady:.2f} ms")
                table.add(f"tick at {size:,} devices, {side}: steady CPU", f"{cpu:.2f} ms")
                table.add(f"tick at {size:,} devices, {side}: quiet", f"{quiet:.3f} ms")
                print(f"tick {size} {side}: steady {steady:.2f} ms, quiet {quiet:.3f} ms")
            table.add(
                f"quiet tick at {size:,} devices, before / after",
                f"{ticks['before'][1] / ticks['after'][1]:.0f}x",
            )
        print("\n" + table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
