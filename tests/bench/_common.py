"""What the collector bench's scenarios share: the simulated fleet's messages, the bench config,
the load-generator and collector processes, RSS sampling, spool depth and the results table."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from fleet.daemon import wire
from tests.bench._machine import PREFIX
from tests.harness.fleet import write_config
from tests.harness.process import spawn, stop_process
from tests.harness.servers import InfluxServer, MosquittoServer

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DATABASE = "fleet"
SITES = ("allingtown", "westhaven")


class Fleet:
    """Topics and realistic full telemetry (battery + location + status) for `size` devices.

    Payloads are formatted from a per-device template rather than built through pydantic, so
    the load generator stays far faster than what it loads; one sample is checked against the
    wire contract at construction so a template bug cannot masquerade as a slow collector.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        half = (size + 1) // 2
        self.devices: list[str] = []
        self.topics: list[str] = []
        for i in range(size):
            segway = i < half
            device = f"sw-{i + 1:04d}" if segway else f"hh-{i - half + 1:04d}"
            kind = "segway" if segway else "handheld"
            self.devices.append(device)
            self.topics.append(wire.telemetry_topic(PREFIX, SITES[i % 2], kind, device))
        sample = self.message(0, 0, time.time())[1]
        wire.Telemetry.model_validate_json(sample)

    def message(self, index: int, seq: int, ts: float) -> tuple[str, bytes]:
        pct = 20.0 + (index * 7 + seq * 0.01) % 80
        lat = 41.26 + index * 1e-5 + (seq % 600) * 1e-6
        lon = -72.95 + index * 1e-5 - (seq % 600) * 1e-6
        payload = (
            f'{{"schema":1,"device":"{self.devices[index]}","seq":{seq},"ts":{ts:.3f},'
            f'"battery":{{"pct":{pct:.1f},"voltage_v":{60 + pct * 0.15:.2f},"current_a":-3.2,'
            f'"temp_c":24.5,"charging":false,"health_pct":96}},'
            f'"location":{{"lat":{lat:.6f},"lon":{lon:.6f},"accuracy_m":5,"speed_kmh":8.2,'
            f'"heading_deg":{seq % 360}}},'
            f'"status":{{"state":"riding","odometer_km":{1234.5 + seq * 0.002:.3f},'
            f'"range_km":{pct * 0.3:.1f},"error_code":0,"locked":false,"rssi_dbm":-61,'
            f'"firmware":"1.3.9"}}}}'
        )
        return self.topics[index], payload.encode()


def write_bench_config(
    workdir: Path,
    *,
    broker: MosquittoServer,
    influx: InfluxServer,
    client_id: str = "bench-collector",
    alerts: str = "",
) -> Path:
    """The tests' collector config (tests/harness/fleet.py) with the collector's production
    defaults (flush 1 s, fsync on, batch 5,000, INFO logging), its state files in a directory
    of its own per client id."""
    home = workdir / client_id
    home.mkdir(parents=True, exist_ok=True)
    return write_config(
        home,
        broker=broker,
        influx=influx,
        database=DATABASE,
        client_id=client_id,
        alerts=alerts,
        production=True,
    )


def battery_count(influx: InfluxServer) -> int:
    """Points in `battery` (one per telemetry message), 0 while the database does not exist."""
    if DATABASE not in influx.databases():
        return 0
    rows = influx.rows("SELECT count(pct) FROM battery", DATABASE)
    return int(rows[0]["count"]) if rows else 0


class Publisher:
    """tests/bench/_publisher.py in its own process; `result()` is its JSON summary."""

    def __init__(self, *args: str) -> None:
        self._proc = subprocess.Popen(
            [PYTHON, str(REPO / "tests" / "bench" / "_publisher.py"), *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
        )

    def result(self, timeout: float) -> dict[str, float]:
        out, _ = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0:
            raise RuntimeError(f"publisher exited with {self._proc.returncode}")
        summary: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
        return summary

    def stop(self, timeout: float = 60) -> dict[str, float]:
        """SIGTERM (a paced run stops at its next tick and reports) and the summary."""
        if self._proc.poll() is None:
            self._proc.terminate()
        return self.result(timeout)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class CollectorProcess:
    """`fleet collector --config ...` as its own process, so its RSS is its own."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.log_path = workdir / "collector.log"
        fleet = str(Path(PYTHON).with_name("fleet"))
        self._proc = spawn([fleet, "collector", "--config", str(config)], self.log_path, cwd=REPO)
        # spawn may wrap the command in setpriv, which execs it: the pid is the collector's.
        self.pid = self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> int:
        return stop_process(self._proc, timeout=60)


def rss_parts(pid: int) -> dict[str, float]:
    """RssAnon / RssFile / RssShmem of a process in MB (/proc/PID/status): which kind grows."""
    parts: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                parts[key] = int(value.split()[0]) / 1024
    return parts


@dataclass
class RssSampler:
    """Samples a process's resident set size every `interval_s` in a thread, and its
    anon/file/shmem split at the highest sample."""

    pid: int
    interval_s: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, MB)
    peak: float = 0.0
    peak_parts: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        process = psutil.Process(self.pid)

        def run() -> None:
            while not self._stop.is_set():
                try:
                    rss = process.memory_info().rss / 1e6
                except psutil.NoSuchProcess:
                    return
                if rss > self.peak:
                    self.peak = rss
                    with contextlib.suppress(OSError):
                        self.peak_parts = rss_parts(self.pid)
                self.samples.append((time.monotonic(), rss))
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, name="rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(t, mb) for t, mb in self.samples if start <= t <= end]

    def at(self, moment: float) -> float:
        """The sample nearest to `moment`."""
        return min(self.samples, key=lambda s: abs(s[0] - moment))[1]


def least_squares(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The line y = a + b x nearest (x, y) points: (a, b); b is 0 when x does not vary."""
    n = len(points)
    if n < 2:
        return (points[0][1] if points else 0.0), 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    b = cov / var if var else 0.0
    return mean_y - b * mean_x, b


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time, in MB per minute."""
    return least_squares(samples)[1] * 60


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class SpoolReader:
    """Reads the depth of a running collector's spool straight from its SQLite file (WAL lets
    a reader in beside the collector's writers)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)

    def rows(self) -> int:
        """Rows (messages) in the spool: ids are contiguous and leave from the head, so this is
        an index lookup rather than a scan."""
        # fetchall, not fetchone: it runs the statement to its end, so no read transaction
        # stays open to hold back the collector's WAL checkpoints.
        low, high = self._conn.execute("SELECT min(id), max(id) FROM spool").fetchall()[0]
        return 0 if low is None else int(high - low + 1)

    def points(self) -> int:
        (points,) = self._conn.execute("SELECT coalesce(sum(n), 0) FROM spool").fetchall()[0]
        return int(points)

    def close(self) -> None:
        self._conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Table:
    """The bench's output: one row per figure, with its target and whether it was met."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("ok" if met else "MISSED")
        self.rows.append((figure, value, target, verdict))
        print(
            f"  {figure}: {value}" + (f"  (target {target}: {verdict})" if target else ""),
            flush=True,
        )

    def markdown(self) -> str:
        lines = ["| figure | measured | target | |", "|---|---|---|---|"]
        lines += [f"| {f} | {v} | {t} | {m} |" for f, v, t, m in self.rows]
        return "\n".join(lines)


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
