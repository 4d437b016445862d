"""The roll-up backfill's recompute at the design point: one hour of 1,000 devices x 1 Hz.

What `RollupBackfill` runs for a late hour is the continuous query's own SELECT ... INTO,
one statement per rolled-up measurement (rollup.backfill_statement). This bench loads one
hour of raw readings (battery, location and status with the simulator's field sets, built
as the collector builds them and checked against its decoder + `schema.reading_lines`) into
a private InfluxDB 1.6, then:

1. live writes alone: the collector's steady write (every device's three points once a
   second, one request) timed for a few seconds, the baseline of `write_ms_max`;
2. each measurement's 1-hour statement through `V1Sink.query` (a long timeout), with the
   live writes going on: its wall time, influxd's CPU seconds and peak RSS meanwhile, and
   the live writes' latency (p50 / max) while it runs;
3. the client's timeout: the battery statement with a 2 s client timeout, then `SHOW
   QUERIES` until it is gone - does InfluxDB go on running a statement whose client left?
4. the collector's part (`make_backfill`, `RollupBackfill.step`) over the hour with the
   default `backfill_timeout_s`, then with the write timeout (10 s) as the recompute's - what
   it used before - and the live writes' latency meanwhile;
5. the real thing: `fleet collector` at 1,000 msg/s (the paced publisher, Mosquitto) with the
   hour pending in its spool: its own `write_ms_max`, `lag_ms_max` and spool depth from
   `pipeline` before and while it recomputes the hour.

With `--seconds` of more than an hour it first compares one statement over all the hours
with one statement an hour (does grouping hours save anything?).

    .venv/bin/python tests/bench/bench_backfill.py                 # 1,000 devices, ~10 min
    .venv/bin/python tests/bench/bench_backfill.py --devices 100   # the helper's first figures

InfluxDB runs with its production cache size (`cache-max-memory-size` 1g; the tests' harness
uses 64m so several instances fit), so the load is not refused while it is written.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil

from fleet.config import load_settings
from fleet.config.influx import InfluxSettings
from fleet.daemon.collector import rollup
from fleet.daemon.collector.backfill import make_backfill, pending_key
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.collector.sinks import V1Sink
from fleet.daemon.spool import Spool
from fleet.daemon.wire.decode import Decoder
from tests.bench._common import CollectorProcess, Publisher, write_bench_config
from tests.harness.servers import InfluxServer, MosquittoServer

H = rollup.HOUR_MS
SITES = ("allingtown", "westhaven")
BATCH = 5000  # influx.batch_size's default: the load goes in as the collector writes it


class ProductionCacheInflux(InfluxServer):
    """The harness's InfluxDB with InfluxDB's default cache (1g): a backlog written at full
    speed is not refused with "cache-max-memory-size exceeded"."""

    def _config(self) -> str:
        text = super()._config()
        return text.replace(
            'cache-max-memory-size = "64m"', 'cache-max-memory-size = "1g"'
        ).replace('cache-snapshot-memory-size = "4m"', 'cache-snapshot-memory-size = "25m"')


def _f(value: float) -> str:
    """A float as lineproto writes it (repr, a trailing '.0' trimmed)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Device:
    site: str
    kind: str
    name: str


class Load:
    """The simulator's telemetry of `size` devices at 1 Hz: JSON (for the check) and the
    lines the collector would write for it (fast, for the load)."""

    def __init__(self, size: int) -> None:
        half = (size + 1) // 2
        self.devices = [
            Device(SITES[i % 2], "segway", f"sw-{i + 1:04d}")
            if i < half
            else Device(SITES[i % 2], "handheld", f"hh-{i - half + 1:04d}")
            for i in range(size)
        ]

    @staticmethod
    def _values(index: int, seq: int) -> dict[str, float]:
        pct = round(20.0 + (index * 7 + seq * 0.01) % 80, 1)
        return {
            "pct": pct,
            "voltage_v": round(60 + pct * 0.15, 2),
            "lat": round(41.26 + index * 1e-5 + (seq % 600) * 1e-6, 6),
            "lon": round(-72.95 + index * 1e-5 - (seq % 600) * 1e-6, 6),
            "heading": float(seq % 360),
            "odometer": round(1234.5 + seq * 0.002, 3),
            "range": round(pct * 0.3, 1),
            "speed": round(8.0 + (seq % 100) / 10, 1),
        }

    def payload(self, index: int, seq: int, ts_ms: int) -> bytes:
        d, v = self.devices[index], self._values(index, seq)
        return (
            f'{{"schema":1,"device":"{d.name}","seq":{seq},"ts":{ts_ms / 1000:.3f},'
            f'"battery":{{"pct":{v["pct"]},"voltage_v":{v["voltage_v"]},"current_a":-3.2,'
            f'"temp_c":24.5,"charging":false,"health_pct":96}},'
            f'"location":{{"lat":{v["lat"]},"lon":{v["lon"]},"accuracy_m":5,'
            f'"speed_kmh":{v["speed"]},"heading_deg":{v["heading"]}}},'
            f'"status":{{"state":"riding","odometer_km":{v["odometer"]},'
            f'"range_km":{v["range"]},"error_code":0,"locked":false,"rssi_dbm":-61,'
            f'"firmware":"1.3.9","speed_kmh":{v["speed"]}}}}}'
        ).encode()

    def topic(self, index: int) -> str:
        d = self.devices[index]
        return f"fleet/v1/{d.site}/{d.kind}/{d.name}/telemetry"

    def lines(self, index: int, seq: int, ts_ms: int) -> str:
        d, v = self.devices[index], self._values(index, seq)
        tags = f"device={d.name},kind={d.kind},site={d.site}"
        pct, s = v["pct"], f"seq={seq}i"
        return (
            f"battery,{tags} charging=false,current_a=-3.2,health_pct=96,pct={_f(pct)},{s},"
            f"temp_c=24.5,voltage_v={_f(v['voltage_v'])} {ts_ms}\n"
            f"location,{tags} accuracy_m=5,heading_deg={_f(v['heading'])},lat={_f(v['lat'])},"
            f"lon={_f(v['lon'])},{s},speed_kmh={_f(v['speed'])} {ts_ms}\n"
            f'status,{tags} error_code=0i,firmware="1.3.9",locked=false,'
            f"odometer_km={_f(v['odometer'])},range_km={_f(v['range'])},rssi_dbm=-61i,{s},"
            f'speed_kmh={_f(v["speed"])},state="riding" {ts_ms}'
        )

    def check(self, start_ms: int) -> None:
        """The fast lines are exactly what the collector writes for the same JSON."""
        decoder = Decoder(
            prefix="fleet",
            default_site=SITES[0],
            kinds=("segway", "handheld"),
            registry={},
            owntracks_map={},
            max_payload_bytes=65536,
            max_future_s=60.0,
            max_age_s=None,
            now_ms=lambda: start_ms + 2 * H,
        )
        for index in range(0, len(self.devices), max(1, len(self.devices) // 50)):
            for seq in (0, 1, 599, 1777, 3599):
                ts = start_ms + seq * 1000 + index
                reading = decoder.decode(self.topic(index), self.payload(index, seq, ts))
                assert reading is not None
                want = "\n".join(reading_lines(reading))
                assert self.lines(index, seq, ts) == want, (self.lines(index, seq, ts), want)

    def batches(self, start_ms: int, seconds: int) -> Iterator[bytes]:
        """Every reading of `seconds` from `start_ms`, device after device each second (as
        they arrive), BATCH points a request."""
        per_batch = BATCH // 3
        chunk: list[str] = []
        n = len(self.devices)
        for seq in range(seconds):
            base = start_ms + seq * 1000
            for index in range(n):
                chunk.append(self.lines(index, seq, base + index % 1000))
                if len(chunk) == per_batch:
                    yield "\n".join(chunk).encode()
                    chunk = []
        if chunk:
            yield "\n".join(chunk).encode()


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
    response = conn.getresponse()
    return response.status, response.read()


def load_hour(influx: InfluxServer, load: Load, start_ms: int, seconds: int) -> float:
    """Write the hour with two writers at once; returns the seconds it took."""
    path = "/write?db=fleet&rp=raw&precision=ms"
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    errors: list[str] = []

    def writer() -> None:
        conn = http.client.HTTPConnection(influx.host, influx.port, timeout=120)
        while (body := work.get()) is not None:
            for attempt in range(50):
                try:
                    status, text = _post(conn, path, body)
                except OSError as exc:
                    status, text = 0, str(exc).encode()
                    conn.close()
                    conn = http.client.HTTPConnection(influx.host, influx.port, timeout=120)
                if status == 204:
                    break
                time.sleep(min(5.0, 0.2 * (attempt + 1)))  # InfluxDB is catching up
            else:
                errors.append(f"HTTP {status}: {text[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    started = time.monotonic()
    for body in load.batches(start_ms, seconds):
        work.put(body)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"the load was refused: {errors[0]}")
    return time.monotonic() - started


@dataclass
class Sampler:
    """influxd's RSS and CPU every 0.2 s."""

    pid: int
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (t, rss MB, cpu s)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        process = psutil.Process(self.pid)

        def run() -> None:
            while not self._stop.is_set():
                cpu = process.cpu_times()
                self.samples.append(
                    (time.monotonic(), process.memory_info().rss / 1e6, cpu.user + cpu.system)
                )
                self._stop.wait(0.2)

        threading.Thread(target=run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def window(self, start: float, end: float) -> tuple[float, float]:
        """(peak RSS MB, CPU s) between two moments."""
        inside = [s for s in self.samples if start <= s[0] <= end] or [self.samples[-1]]
        before = [s for s in self.samples if s[0] <= start] or inside[:1]
        return max(s[1] for s in inside), inside[-1][2] - before[-1][2]


class LiveWrites:
    """The collector's steady write: every device's three points, stamped now, once a second
    in one request (flush_interval_s 1, under batch_size at 1,000 devices); each timed."""

    def __init__(self, influx: InfluxServer, load: Load) -> None:
        self._influx = influx
        self._load = load
        self.timings: list[tuple[float, float]] = []  # (monotonic at start, ms)
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LiveWrites:
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self._influx.host, self._influx.port, timeout=10)
        path = "/write?db=fleet&rp=raw&precision=ms"
        seq = 0
        while not self._stop.is_set():
            now = int(time.time() * 1000)
            body = "\n".join(
                self._load.lines(i, 100_000 + seq, now) for i in range(len(self._load.devices))
            ).encode()
            began = time.monotonic()
            try:
                status, _ = _post(conn, path, body)
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(self._influx.host, self._influx.port, timeout=10)
            elapsed = (time.monotonic() - began) * 1000
            if status == 204:
                self.timings.append((began, elapsed))
            else:
                self.failures += 1
            seq += 1
            self._stop.wait(max(0.0, 1.0 - elapsed / 1000))
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> str:
        ms = [t for began, t in self.timings if start <= began <= end]
        if not ms:
            return "no write"
        return f"p50 {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms ({len(ms)} writes)"


def running_queries(influx: InfluxServer) -> list[str]:
    return [
        f"{row['query'][:40]}... {row['duration']}"
        for row in influx.rows("SHOW QUERIES")
        if "INTO" in str(row.get("query", ""))
    ]


def compare_grouping(sink: V1Sink, hour: int, hours: int) -> None:
    """Is one statement over consecutive hours cheaper than one statement an hour?"""
    for attempt in (1, 2):
        for m in rollup.measurements():
            began = time.monotonic()
            whole = sink.query(
                rollup.backfill_statement("fleet", "raw", "rp_1h", m, hour, hour + hours * H)
            )
            one = time.monotonic() - began
            began = time.monotonic()
            each = [
                sink.query(rollup.backfill_statement("fleet", "raw", "rp_1h", m, h, h + H))
                for h in range(hour, hour + hours * H, H)
            ]
            split = time.monotonic() - began
            assert whole.ok, whole
            assert all(r.ok for r in each), each
            print(
                f"run {attempt} {m:9s} {hours} h in one statement {one:6.2f} s, "
                f"one statement an hour {split:6.2f} s",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=3600, help="readings per device")
    parser.add_argument("--probe-timeout-s", type=float, default=2.0)
    parser.add_argument(
        "--collector-s",
        type=float,
        default=240.0,
        help="longest run of phase 5, the real collector (0 skips it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the InfluxDB directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    influx = ProductionCacheInflux(workdir / "influxd").start()
    try:
        run(influx, workdir, args)
    finally:
        influx.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(influx: InfluxServer, workdir: Path, args: argparse.Namespace) -> None:
    settings = InfluxSettings(url=influx.url, timeout_s=600)
    sink = V1Sink(settings)
    boot = sink.bootstrap()
    assert boot.ok, boot
    load = Load(args.devices)
    hour = rollup.hour_of(int(time.time() * 1000)) - 30 * H  # late: no CQ touches it
    load.check(hour)
    cores = psutil.cpu_count()
    print(f"{args.devices} devices x {args.seconds} s at 1 Hz; {cores} CPUs", flush=True)

    seconds = load_hour(influx, load, hour, args.seconds)
    points = 3 * args.devices * args.seconds
    print(f"loaded {points:,} points in {seconds:.0f} s ({points / seconds:,.0f} points/s)")

    sampler = Sampler(influx.pid or 0).start()
    live = LiveWrites(influx, load).start()
    t0 = time.monotonic()
    live_idle = threading.Event()
    live_idle.wait(8.0)  # the live writes alone: their baseline
    print(f"live writes alone ({3 * args.devices} points/s): {live.between(t0, time.monotonic())}")

    hours = max(1, args.seconds // 3600)
    if hours > 1:
        compare_grouping(sink, hour, hours)
    rss_before = sampler.samples[-1][1]
    print(f"influxd RSS before the statements: {rss_before:.0f} MB")
    for attempt in (1, 2):
        for m in rollup.measurements():
            statement = rollup.backfill_statement("fleet", "raw", "rp_1h", m, hour, hour + H)
            began = time.monotonic()
            result = sink.query(statement)
            ended = time.monotonic()
            rss, cpu = sampler.window(began, ended)
            print(
                f"run {attempt} {m:9s} 1 h: {ended - began:6.1f} s {'ok' if result.ok else result}"
                f"; influxd CPU {cpu:.1f} s, peak RSS {rss:.0f} MB; "
                f"live writes meanwhile {live.between(began, ended)}",
                flush=True,
            )

    # Does InfluxDB go on with a statement whose client gave up?
    short = V1Sink(settings.model_copy(update={"timeout_s": args.probe_timeout_s}))
    statement = rollup.backfill_statement("fleet", "raw", "rp_1h", "battery", hour, hour + H)
    began = time.monotonic()
    result = short.query(statement)
    gave_up = time.monotonic()
    print(
        f"battery with a {args.probe_timeout_s} s client timeout: status {result.status} after "
        f"{gave_up - began:.1f} s ({result.body[:80]})"
    )
    still = running_queries(influx)
    while still:
        print(
            f"  {time.monotonic() - gave_up:5.1f} s after the client left, InfluxDB runs: {still}"
        )
        threading.Event().wait(1.0)
        still = running_queries(influx)
    finished = time.monotonic()
    _, cpu = sampler.window(gave_up, finished)
    print(
        f"  gone {finished - gave_up:.1f} s after the client left; influxd CPU meanwhile "
        f"{cpu:.1f} s"
    )
    short.close()

    # The collector's own part over the same hour: the defaults (backfill_timeout_s), then
    # with the write timeout (10 s) as the recompute's, which is what it used before.
    for label, timeout in (("backfill_timeout_s default", None), ("the write timeout", 10.0)):
        cut = {"backfill_settle_s": 0.0}
        if timeout is not None:
            cut["backfill_timeout_s"] = timeout
        run_part(workdir, settings.model_copy(update=cut), hour, sampler, live, label)
    live.stop()
    print(f"live write failures: {live.failures}")
    if args.collector_s > 0:
        run_collector(influx, workdir, hour, args, sampler)
    sampler.stop()
    sink.close()


def run_part(
    workdir: Path,
    settings: InfluxSettings,
    hour: int,
    sampler: Sampler,
    live: LiveWrites,
    label: str,
) -> None:
    """RollupBackfill as the collector builds it, stepped until the hour is done or failed
    (its retry, after the backoff, runs the same statement again)."""
    spool = Spool(workdir / f"spool-{time.monotonic_ns()}.sqlite", max_bytes=1 << 28, fsync=False)
    writer_sink = V1Sink(settings.model_copy(update={"timeout_s": 600.0}))
    backfill = make_backfill(settings, spool, writer_sink, backlog_drained=lambda: True)
    assert backfill is not None
    backfill.pending.note([hour])
    began = time.monotonic()
    while len(backfill.pending) and not backfill.counters.failures:
        backfill.step()
    ended = time.monotonic()
    rss, cpu = sampler.window(began, ended)
    print(
        f"the collector's part ({label}, {settings.backfill_timeout_s:g} s): "
        f"{ended - began:.1f} s, {backfill.counters.backfilled_hours} h recomputed, "
        f"{backfill.counters.failures} failures; influxd CPU {cpu:.1f} s, peak RSS {rss:.0f} MB; "
        f"live writes meanwhile {live.between(began, ended)}",
        flush=True,
    )
    spool.close()
    writer_sink.close()


def _pipeline(influx: InfluxServer) -> list[dict[str, object]]:
    return influx.rows(
        'SELECT "write_ms_max", "lag_ms_max", "spool_points", "rollup_backfilled_hours", '
        '"rollup_backfill_failures" FROM "pipeline" WHERE "device" = \'\'',
        "fleet",
        epoch="ms",
    )


def run_collector(
    influx: InfluxServer,
    workdir: Path,
    hour: int,
    args: argparse.Namespace,
    sampler: Sampler,
) -> None:
    """Phase 5: `fleet collector` (its own process, production settings) takes 1,000 msg/s
    from the paced publisher while its backfill recomputes the loaded hour, pending in its
    spool from before its start (so it begins `backfill_settle_s`, 60 s, after the start:
    a minute of the same load without it first). Its own `write_ms_max` / `lag_ms_max` /
    `spool_points` from `pipeline`, every 10 s, before and while the hour is recomputed."""
    broker = MosquittoServer(workdir / "mosquitto").start()
    collector: CollectorProcess | None = None
    publisher: Publisher | None = None
    try:
        config = write_bench_config(workdir, broker=broker, influx=influx)
        settings = load_settings(config, environ={})
        spool = Spool(settings.spool.path, max_bytes=settings.spool.max_bytes, fsync=False)
        spool.set_meta(pending_key(settings.influx), json.dumps([hour]))
        spool.close()
        publisher = Publisher(
            "paced",
            "--config",
            str(config),
            "--devices",
            str(args.devices),
            "--duration",
            str(args.collector_s),
        )
        collector = CollectorProcess(config, workdir)
        started = time.time() * 1000
        began = time.monotonic()
        done_at = None
        while time.monotonic() - began < args.collector_s and collector.alive():
            rows = _pipeline(influx)
            if rows and rows[-1]["rollup_backfilled_hours"] and done_at is None:
                done_at = time.monotonic()
                print(f"the collector recomputed the hour {done_at - began:.0f} s after its start")
            if done_at is not None and time.monotonic() - done_at > 25:
                break  # two reports after it
            threading.Event().wait(2.0)
        _, cpu = sampler.window(began, time.monotonic())
        for row in _pipeline(influx):
            at = (float(str(row["time"])) - started) / 1000
            if at < 0:
                continue
            print(
                f"  +{at:5.0f} s: write_ms_max {row['write_ms_max']}, lag_ms_max "
                f"{row['lag_ms_max']}, spool_points {row['spool_points']}, backfilled "
                f"{row['rollup_backfilled_hours']}, failures {row['rollup_backfill_failures']}"
            )
        print(f"  influxd CPU over the phase: {cpu:.0f} s in {time.monotonic() - began:.0f} s")
    finally:
        if publisher is not None:
            print(f"  publisher: {publisher.stop()}")
        if collector is not None:
            collector.stop()
        broker.stop()


if __name__ == "__main__":
    main()
