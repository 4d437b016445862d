"""Collector memory side by side: one `fleet collector` process per source tree, all on the same
Mosquitto and InfluxDB under the same load (1,000 devices x 1 Hz), so a cut is measured before
and after in one run, on one machine load (issue 14: <= 60 MB steady).

    .venv/bin/python tests/bench/bench_memory.py --tree before=/tmp/before --tree after=.
    .venv/bin/python tests/bench/bench_memory.py            # the working tree alone

A tree is a directory holding the `fleet` package (a `git archive` export, or a copy of
fleet/ daemon/ config/ drivers/); its collector runs with PYTHONPATH set to it. Each collector
has its own client id, persistent session and state files; every one receives every message.
Prints, per tree: RSS idle (subscribed), the steady phase's median and peak, and the anonymous /
file-backed split of the peak (/proc/PID/smaps_rollup).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleet.daemon import wire
from tests.bench._common import PYTHON, Publisher, write_bench_config
from tests.bench._machine import PREFIX
from tests.harness.process import spawn, stop_process
from tests.harness.servers import InfluxServer, MosquittoServer

TELEMETRY = wire.subscriptions(PREFIX)[0]


def smaps(pid: int) -> dict[str, float]:
    """Rss, its anonymous part and the rest (file-backed: code, shared libraries), in MB of
    10^6 bytes, as bench_collector.py (psutil's rss / 1e6) reports them."""
    kb: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                kb[key] = int(value.split()[0])
    return {
        "rss": kb["Rss"] * 1024 / 1e6,
        "anon": kb["Anonymous"] * 1024 / 1e6,
        "file": (kb["Rss"] - kb["Anonymous"]) * 1024 / 1e6,
    }


def save_smaps(where: Path | None, procs: dict[str, subprocess.Popen[bytes]], phase: str) -> None:
    """/proc/PID/smaps of each collector as WHERE/NAME.PHASE.smaps: which mappings grew."""
    if where is None:
        return
    where.mkdir(parents=True, exist_ok=True)
    for name, proc in procs.items():
        (where / f"{name}.{phase}.smaps").write_bytes(Path(f"/proc/{proc.pid}/smaps").read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tree", action="append", default=[], help="NAME=PATH (repeatable; default: this tree)"
    )
    parser.add_argument("--steady-s", type=float, default=60.0, help="steady phase (60 s)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--smaps", type=Path, help="save each collector's /proc/PID/smaps here")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("tree", str(repo))]
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    fleet = str(Path(PYTHON).with_name("fleet"))
    print(f"{len(trees)} collectors, {args.devices} devices x 1 Hz, {args.steady_s:.0f} s steady")
    try:
        with (
            MosquittoServer(workdir / "mosquitto") as broker,
            InfluxServer(workdir / "influx") as influx,
        ):
            procs: dict[str, subprocess.Popen[bytes]] = {}
            for name, path in trees:
                config = write_bench_config(
                    workdir, broker=broker, influx=influx, client_id=f"mem-{name}"
                )
                env = {**os.environ, "PYTHONPATH": str(Path(path).resolve())}
                since = broker.log_offset()
                # cwd outside any tree: `python -c`/`-m` would put the cwd first on sys.path.
                proc = spawn([fleet, "collector", "--config", str(config)],
                             workdir / f"{name}.log", env=env, cwd=workdir)  # fmt: skip
                procs[name] = proc
                broker.wait_subscribed(f"mem-{name}", TELEMETRY, since=since, timeout=60)
            time.sleep(2)  # let start-up garbage settle before the idle sample
            idle = {name: smaps(p.pid) for name, p in procs.items()}
            save_smaps(args.smaps, procs, "idle")
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
            publisher = Publisher(
                "paced", "--config", str(config), "--devices", str(args.devices),
                "--duration", str(args.steady_s),
            )  # fmt: skip
            end = time.monotonic() + args.steady_s
            while time.monotonic() < end:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited; see {workdir / name}.log")
                    samples[name].append(smaps(proc.pid))
                time.sleep(0.5)
            save_smaps(args.smaps, procs, "steady")
            publisher.stop()
            for proc in procs.values():
                stop_process(proc, timeout=60)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| tree | RSS idle | steady median (2nd half) | steady peak | peak anon / file |")
    print("|---|---|---|---|---|")
    for name, _ in trees:
        run = samples[name]
        peak = max(run, key=lambda s: s["rss"])
        median = statistics.median(s["rss"] for s in run[len(run) // 2 :])
        print(
            f"| {name} | {idle[name]['rss']:.1f} MB | {median:.1f} MB | {peak['rss']:.1f} MB | "
            f"{peak['anon']:.1f} / {peak['file']:.1f} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
