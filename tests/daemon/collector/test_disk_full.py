"""A full disk under a running collector: nothing acknowledged, no crash loop, /healthz says why,
and every reading stored exactly once when space returns.

Two ways to fill the disk: a real small filesystem (a 4 MiB tmpfs, mounted for the test:
needs root, which the CI container has), and SQLite's own `max_page_count`, which any
machine allows (the file cannot grow past it: SQLITE_FULL, as from a full disk).
"""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.daemon.collector.app import Collector
from fleet.daemon.spool import Spool
from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.slow

DEVICE = "sw-41"
TOPIC = f"fleet/v1/allingtown/segway/{DEVICE}/telemetry"
BASE_MS = int(time.time() * 1000) - 3_600_000


BURST = 20  # readings published between two looks at /healthz


def reading(seq: int) -> bytes:
    return telemetry(DEVICE, seq, BASE_MS + seq * 1000, pct=100 - seq / 100)


class SmallDisk:
    """A tmpfs of a few MiB; `fill()` takes its last byte, `free()` gives the space back."""

    def __init__(self, mountpoint: Path) -> None:
        self.path = mountpoint
        self._ballast = mountpoint / "ballast"

    def fill(self) -> int:
        written = 0
        with self._ballast.open("ab", buffering=0) as f:  # unbuffered: nothing left to flush
            for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
                try:
                    while True:
                        written += f.write(b"\0" * chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        return written

    def free(self) -> None:
        self._ballast.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); "
            "test_a_spool_that_cannot_grow covers the same path portably"
        )
    try:
        yield SmallDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def health(collector: Collector) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{collector.web.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_seqs(influx: InfluxServer, db: str) -> list[int]:
    if db not in influx.databases():
        return []  # the collector creates it with its first write
    rows = influx.rows(f"SELECT seq, pct FROM battery WHERE device = '{DEVICE}'", db)
    return [r["seq"] for r in rows]


def assert_exactly_once(influx: InfluxServer, db: str, n: int) -> None:
    def all_stored() -> list[int]:
        seqs = stored_seqs(influx, db)
        return seqs if len(seqs) >= n else []

    seqs = wait_until(all_stored, timeout=60, message=f"all {n} readings stored")
    assert sorted(seqs) == list(range(1, n + 1))


def no_crash_loop(caplog: pytest.LogCaptureFixture, collector: Collector) -> None:
    crashes = [
        r.getMessage()
        for r in caplog.records
        if "crashed; restarting" in r.getMessage() or "giving up" in r.getMessage()
    ]
    assert crashes == []
    assert not collector.stopped.is_set()


def disk_settings(
    tmp_path: Path, broker: MosquittoServer, influx: InfluxServer, db: str, disk: Path
) -> FleetSettings:
    config = write_config(tmp_path, broker=broker, influx=influx, database=db)
    text = config.read_text()
    text = text.replace(str(tmp_path / "spool.sqlite"), str(disk / "spool.sqlite"))
    text = text.replace(str(tmp_path / "alerts.sqlite"), str(disk / "alerts.sqlite"))
    config.write_text(text)
    settings = settings_from(config)
    assert settings.spool.path.parent == disk
    return settings


def test_a_full_filesystem_stops_acknowledging_and_everything_is_stored_once_space_returns(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = disk_settings(tmp_path, mqtt_broker, influx, tmp_db, small_disk.path)
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        pub.publish(TOPIC, reading(1))
        wait_until(lambda: stored_seqs(influx, tmp_db) == [1], timeout=20, message="first one")
        assert health(collector)[0] == 200

        assert small_disk.fill() > 0
        sent = 1

        def refused() -> bool:
            nonlocal sent
            for _ in range(BURST):
                sent += 1
                pub.publish(TOPIC, reading(sent))
            return health(collector)[0] == 503

        wait_until(refused, timeout=60, interval=0.01, message="the spool refuses commits")
        # Not a blip: it keeps refusing, keeps retrying, and says why and for how long.
        wait_until(
            lambda: (health(collector)[1]["spool_failing_for_s"] or 0) >= 3,
            timeout=20,
            message="still refused 3 s later",
        )
        status, body = health(collector)
        assert status == 503
        assert "full" in body["spool_error"]
        assert body["spool_failing_for_s"] >= 3
        assert body["mqtt_connected"] is True
        accepted_while_full = collector.ingest.counters.spooled
        for _ in range(50):  # more arrive meanwhile: held by the broker, not lost
            sent += 1
            pub.publish(TOPIC, reading(sent))
        no_crash_loop(caplog, collector)

        small_disk.free()
        assert_exactly_once(influx, tmp_db, sent)
        wait_until(lambda: health(collector)[0] == 200, timeout=20, message="healthy")
        status, body = health(collector)
        assert body["spool_error"] is None
        assert body["spool_failing_for_s"] is None
        assert collector.ingest.counters.spooled > accepted_while_full
        # The alert engine's state caught up too, without a restart.
        alerts = collector.alerts
        assert alerts is not None
        wait_until(lambda: alerts.store.error is None, timeout=20, message="state written")
        no_crash_loop(caplog, collector)
    assert "spool commits again" in caplog.text


def test_a_spool_that_cannot_grow(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    make_influx: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The portable variant: SQLite's `max_page_count` on every connection to the spool.

    InfluxDB is away meanwhile, so the writer frees no pages: the spool stays full until
    the limit is lifted (the disk has space again), then everything drains once.
    """
    caplog.set_level(logging.INFO)
    limit = {"pages": 0}  # 0: no limit (SQLite's own maximum)
    plain_conn = Spool._conn

    def limited_conn(self: Spool) -> Any:
        conn = plain_conn(self)
        pages = limit["pages"] or 4_294_967_294
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(Spool, "_conn", limited_conn)
    influx = make_influx()
    settings = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database="pages")
    )
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        pub.publish(TOPIC, reading(1))
        wait_until(lambda: stored_seqs(influx, "pages") == [1], timeout=20, message="first one")
        influx.stop()
        # The file may not grow past its size now.
        limit["pages"] = max(2, settings.spool.path.stat().st_size // 4096)
        sent = 1

        def refused() -> bool:
            nonlocal sent
            for _ in range(BURST):
                sent += 1
                pub.publish(TOPIC, reading(sent))
            return health(collector)[0] == 503

        wait_until(refused, timeout=60, interval=0.01, message="the spool refuses commits")
        for _ in range(50):
            sent += 1
            pub.publish(TOPIC, reading(sent))
        wait_until(
            lambda: (health(collector)[1]["spool_failing_for_s"] or 0) >= 3,
            timeout=20,
            message="still refused 3 s later",
        )
        status, body = health(collector)
        assert status == 503
        assert body["spool_error"] == "database or disk is full"
        no_crash_loop(caplog, collector)
        limit["pages"] = 0
        influx.start()
        assert_exactly_once(influx, "pages", sent)
        wait_until(lambda: health(collector)[0] == 200, timeout=20, message="healthy again")
        no_crash_loop(caplog, collector)
    # One episode: refused from the first failure until the limit was lifted.
    assert caplog.text.count("spool commits again") == 1


def test_the_writer_on_a_full_filesystem_keeps_its_rows_and_drains_once_space_returns(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    make_influx: Any,
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deleting written rows needs space too (WAL frames): a write InfluxDB took whose rows
    cannot leave the spool is written again later - the same points, stored once."""
    caplog.set_level(logging.INFO)
    influx = make_influx()
    settings = disk_settings(tmp_path, mqtt_broker, influx, "writer_full", small_disk.path)
    n = 600
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        influx.stop()
        for seq in range(1, n + 1):
            pub.publish(TOPIC, reading(seq))
        wait_until(
            lambda: collector.ingest.counters.spooled >= n, timeout=30, message="all spooled"
        )
        assert small_disk.fill() > 0
        influx.start()
        assert_exactly_once(influx, "writer_full", n)
        no_crash_loop(caplog, collector)
        small_disk.free()
        wait_until(lambda: collector.spool.depth().rows == 0, timeout=30, message="drained")
        assert_exactly_once(influx, "writer_full", n)
        rows = influx.rows(
            f"SELECT count(pct) FROM battery WHERE device = '{DEVICE}'", "writer_full"
        )
        assert rows[0]["count"] == n
        no_crash_loop(caplog, collector)
