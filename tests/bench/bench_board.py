"""The readiness board under load: `GET /api/v1/devices` while the collector ingests.

    .venv/bin/python tests/bench/bench_board.py [--quick] [--devices 1000] [--seconds 20] [--keep]

A private Mosquitto and InfluxDB (tests/harness), the collector as its own process with its
production defaults, and the bench's load generator (`_publisher.py paced`, its own process):
1,000 devices x 1 Hz = 1,000 msg/s of full telemetry for the whole run. Once the board lists
every device, three phases of `--seconds` each, every request on a new connection (the
collector answers HTTP/1.0) and timed from connect to the last byte of the body:

- baseline: one client asking `GET /healthz` back to back (20 ms apart) - the same server,
  threads and load, without the board's work;
- board: one client asking `GET /api/v1/devices` the same way (a board polls every few
  seconds; this is many boards' worth);
- boards: `--clients` (4) clients doing that at once.

Then the page weight: `GET /` and every local file it loads (script src, link href, img src),
as served.
Target: p99 of the board's request <= 50 ms; page weight <= 200 kB. Prints the figures with
their targets and a markdown table; exits non-zero only when the bench itself fails (a server
that does not start, the collector exiting, the board never listing the devices).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import (
    CollectorProcess,
    Publisher,
    Table,
    machine,
    percentile,
    write_bench_config,
)
from tests.harness.servers import InfluxServer, MosquittoServer

TARGET_P99_MS = 50.0
TARGET_PAGE_BYTES = 200_000
PAUSE_S = 0.02  # between one client's requests
# What the page loads (scripts, stylesheets, icons, images), not where its links lead: an
# <a href="/login"> is another page, fetched only if someone follows it.
_ASSET = re.compile(
    r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"'#]+)["']""", re.IGNORECASE
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """Status, body and milliseconds from connect to the body's last byte."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, body, (time.perf_counter() - started) * 1000


def poll(port: int, path: str, seconds: float, clients: int) -> list[float]:
    """`clients` threads asking `path` until `seconds` are over; every latency in ms."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            status, body, ms = get(port, path)
            with lock:
                if status == 200:
                    latencies.append(ms)
                else:
                    failures.append(f"{status} {body[:200]!r}")
            time.sleep(PAUSE_S)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{path}: {len(failures)} failed requests, e.g. {failures[0]}")
    return latencies


def wait_for_devices(port: int, count: int, collector: CollectorProcess, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if not collector.alive():
            raise RuntimeError("the collector exited; see its log")
        try:
            status, body, _ = get(port, "/api/v1/devices")
        except OSError:
            status, body = 0, b""
        if status == 200:
            seen = len(json.loads(body))
            if seen >= count:
                return seen
        time.sleep(0.5)
    raise RuntimeError(f"the board lists {seen} of {count} devices after {timeout:.0f} s")


def page_weight(port: int) -> tuple[int, list[tuple[str, int]]]:
    """`/` and every same-origin file it loads, as served: (total bytes, [(path, bytes)])."""
    status, html, _ = get(port, "/")
    if status != 200:
        raise RuntimeError(f"GET / answered {status}")
    files = [("/", len(html))]
    for ref in sorted(set(_ASSET.findall(html.decode("utf-8", "replace")))):
        url = urlsplit(urljoin(f"http://127.0.0.1:{port}/", ref))
        if url.netloc != f"127.0.0.1:{port}" or url.path.startswith("/api/"):
            continue  # not a file of the page (another origin would break "served locally")
        path = url.path + (f"?{url.query}" if url.query else "")
        status, body, _ = get(port, path)
        if status != 200:
            raise RuntimeError(f"GET {path} (named by /) answered {status}")
        files.append((path, len(body)))
    return sum(size for _, size in files), files


def summary(table: Table, name: str, values: list[float], target: bool) -> float:
    p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
    table.add(f"{name} p50", f"{p50:.1f} ms")
    table.add(
        f"{name} p99",
        f"{p99:.1f} ms",
        f"<= {TARGET_P99_MS:.0f} ms" if target else "",
        p99 <= TARGET_P99_MS if target else None,
    )
    table.add(f"{name} max", f"{max(values):.1f} ms (n = {len(values)})")
    return p99


def run(workdir: Path, devices: int, seconds: float, clients: int) -> Table:
    table = Table()
    port = free_port()
    with (
        MosquittoServer(workdir / "mosquitto") as broker,
        InfluxServer(workdir / "influx") as db,
    ):
        config = write_bench_config(workdir, broker=broker, influx=db, client_id="bench-board")
        text = config.read_text().replace('bind = "127.0.0.1:0"', f'bind = "127.0.0.1:{port}"')
        config.write_text(text)
        collector = CollectorProcess(config, workdir)
        load: Publisher | None = None
        try:
            wait_until_up(port, collector)
            duration = 3 * seconds + 120  # the phases, the warm-up and margin; stopped after
            load = Publisher(
                "paced", "--config", str(config), "--devices", str(devices),
                "--duration", str(duration),
            )  # fmt: skip
            started = time.monotonic()
            listed = wait_for_devices(port, devices, collector, timeout=90)
            print(f"board lists {listed} devices after {time.monotonic() - started:.1f} s")
            received_before = health(port)["received"]
            phase_started = time.monotonic()

            base = poll(port, "/healthz", seconds, 1)
            base_p99 = summary(table, "GET /healthz (baseline), 1 client", base, False)
            one = poll(port, "/api/v1/devices", seconds, 1)
            one_p99 = summary(table, "GET /api/v1/devices, 1 client", one, True)
            many = poll(port, "/api/v1/devices", seconds, clients)
            summary(table, f"GET /api/v1/devices, {clients} clients at once", many, True)
            table.add("devices p99 / healthz p99 (1 client)", f"{one_p99 / base_p99:.1f}x")

            received = health(port)["received"] - received_before
            rate = received / (time.monotonic() - phase_started)
            table.add(
                "messages ingested during the phases", f"{rate:,.0f} msg/s", ">= 950", rate >= 950
            )
            _, body, _ = get(port, "/api/v1/devices")
            table.add(
                "body of GET /api/v1/devices",
                f"{len(body) / 1000:,.1f} kB ({len(gzip.compress(body)) / 1000:,.1f} kB gzipped),"
                f" {len(json.loads(body))} devices",
            )
            total, files = page_weight(port)
            table.add(
                "page weight of / (HTML + its files, as served)",
                f"{total / 1000:,.1f} kB in {len(files)} files",
                f"<= {TARGET_PAGE_BYTES // 1000} kB",
                total <= TARGET_PAGE_BYTES,
            )
            for path, size in files:
                print(f"    {path}: {size:,} bytes")
            if not collector.alive():
                raise RuntimeError("the collector exited during the bench; see its log")
        finally:
            if load is not None:
                summary_of_load = load.stop()
                print(f"load generator: {summary_of_load}")
            collector.stop()
    return table


def health(port: int) -> dict[str, int]:
    _, body, _ = get(port, "/healthz")  # 503 (MQTT down) still carries the counters
    details: dict[str, int] = json.loads(body)
    return details


def wait_until_up(port: int, collector: CollectorProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not collector.alive():
            raise RuntimeError("the collector exited at start; see its log")
        try:
            if get(port, "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the collector's /healthz did not answer 200 in 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s phases instead of 20 s")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, help="length of each phase (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="clients at once (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-board-"))
    print(f"{machine()}; {args.devices} devices x 1 Hz; phases of {seconds:g} s")
    try:
        table = run(workdir, args.devices, seconds, args.clients)
    except Exception as exc:  # noqa: BLE001 - the bench failed: say why, keep the logs
        print(f"bench failed: {exc}; logs in {workdir}", file=sys.stderr)
        return 1
    print()
    print(table.markdown())
    if args.keep:
        print(f"work directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
