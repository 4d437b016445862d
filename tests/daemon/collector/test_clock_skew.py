"""A collector whose clock is ten minutes off, run under libfaketime (Debian `faketime`).

The collector is the real `fleet collector` process, started by `faketime` with its wall
clock shifted; the publisher, Mosquitto and InfluxDB keep the true time, and readings
are stamped with it, as agents with a good clock would. What must hold:

- ten minutes ahead: every reading looks ten minutes old to the collector; they are
  stored, and a low battery still fires and resolves (the engine learns the offset);
- ten minutes behind, default settings: every reading is ten minutes in the
  collector's future, past `collector.max_future_s` (300 s): refused as `future_ts`
  and kept in the dead-letter store, not stored wrongly - yet the alert engine still
  judges them (a low battery fires and resolves), and once the clock is right
  `fleet deadletters replay` stores every one of them, once;
- ten minutes behind with `max_future_s = 900` (a site that tolerates the skew): stored,
  and the alert fires and resolves, not frozen by readings from "the future".
"""

from __future__ import annotations

import glob
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fleet.config import FleetSettings
from tests.harness.fleet import Listener, publisher, settings_from, telemetry, write_config
from tests.harness.process import spawn, stop_process, tail
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.slow
T = TypeVar("T")

DEVICE = "sw-05"
TOPIC = f"fleet/v1/allingtown/segway/{DEVICE}/telemetry"
ALERTS = "fleet/v1/allingtown/alerts/+/+"
DEADLETTER = "fleet/v1/allingtown/deadletter"
# Quick to fire and to learn the offset; offline stays on: it must not fire either.
ALERT_KEYS = "clock_settle_s = 2\n[alerts.limits]\nbattery_low_for_s = 0\n"


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: run scripts/setup (Debian package faketime)"
    return found[0]


@contextmanager
def skewed_collector(
    tmp_path: Path, broker: MosquittoServer, config: Path, shift: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`fleet collector` with its wall clock shifted by `shift` ("+10m", "-10m").

    libfaketime is preloaded into the collector itself (not through the `faketime`
    wrapper, which would take the SIGTERM meant for the collector and leave it running).
    """
    settings = settings_from(config)
    fleet = str(Path(sys.executable).with_name("fleet"))
    log = tmp_path / f"collector{shift}.log"
    env = {
        **os.environ,
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": shift,
        # The wall clock is what a host without NTP gets wrong; the monotonic one stays true.
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    since = broker.log_offset()
    started = time.time()
    proc = spawn([fleet, "collector", "--config", str(config)], log, env=env)
    try:
        broker.wait_subscribed(settings.mqtt.client_id, "owntracks/+/+", since=since, timeout=30)
        yield proc
        assert stop_process(proc) == 0, tail(log)
    finally:
        stop_process(proc)
    # The collector's own log lines carry its (shifted) clock: the skew was real.
    first = log.read_text().split(" ", 2)[:2]
    logged = datetime.fromisoformat(" ".join(first).replace(",", ".")).timestamp()
    expected = int(shift.removesuffix("m")) * 60
    assert abs(logged - started - expected) < 60, f"collector log starts {first}"


class Stream:
    """Readings of one Segway stamped with the true time, one per call."""

    def __init__(self, pub: Any) -> None:
        self._pub = pub
        self._seq = itertools.count(1)
        self.sent_ts: list[int] = []

    def send(self, pct: float) -> None:
        # Distinct timestamps: two readings of one ms would be one point in InfluxDB.
        ts = max(int(time.time() * 1000), self.sent_ts[-1] + 1 if self.sent_ts else 0)
        self._pub.publish(TOPIC, telemetry(DEVICE, next(self._seq), ts, pct=pct))
        self.sent_ts.append(ts)


def alert_states(listener: Listener) -> list[tuple[str, str]]:
    return [(m["rule"], m["state"]) for m in listener.json() if m["device"] == DEVICE]


def stored_ts(influx: InfluxServer, db: str) -> list[int]:
    rows = influx.rows(f"SELECT pct FROM battery WHERE device = '{DEVICE}'", db, epoch="ms")
    return [int(r["time"]) for r in rows]


def config_for(
    tmp_path: Path, broker: MosquittoServer, influx: InfluxServer, db: str, collector: str = ""
) -> tuple[Path, FleetSettings]:
    """The test config; `collector` adds keys to its [collector] table."""
    path = write_config(tmp_path, broker=broker, influx=influx, database=db, alerts=ALERT_KEYS)
    path.write_text(path.read_text().replace("[collector]\n", f"[collector]\n{collector}"))
    return path, settings_from(path)


def at_least(n: int, get: Callable[[], list[T]]) -> Callable[[], list[T]]:
    """A wait_until predicate: what `get` returns once it holds `n` items."""

    def check() -> list[T]:
        found = get()
        return found if len(found) >= n else []

    return check


def fires_and_resolves(stream: Stream, alerts: Listener) -> None:
    def fired() -> bool:
        stream.send(pct=20.0)  # low, not critical
        return ("battery_low", "firing") in alert_states(alerts)

    wait_until(fired, timeout=30, interval=0.5, message="battery_low fires")

    def resolved() -> bool:
        stream.send(pct=60.0)
        return ("battery_low", "resolved") in alert_states(alerts)

    wait_until(resolved, timeout=30, interval=0.5, message="battery_low resolves")
    assert ("offline", "firing") not in alert_states(alerts)


@pytest.fixture
def broker(make_broker: Callable[..., MosquittoServer]) -> MosquittoServer:
    return make_broker()  # own broker: no retained alerts or availability of other tests


@pytest.mark.parametrize("shift", ["+10m", "-10m"], ids=["ahead", "behind-tolerated"])
def test_alerts_fire_and_resolve_and_readings_are_stored_whatever_the_collectors_clock(
    tmp_path: Path, broker: MosquittoServer, influx: InfluxServer, tmp_db: str, shift: str
):
    # Behind by 10 min, readings are 600 s in the collector's future: tolerate 900 s here.
    extra = "max_future_s = 900\n" if shift.startswith("-") else ""
    config, settings = config_for(tmp_path, broker, influx, tmp_db, extra)
    alerts = Listener(settings, broker, ALERTS)
    try:
        with skewed_collector(tmp_path, broker, config, shift), publisher(settings) as pub:
            stream = Stream(pub)
            fires_and_resolves(stream, alerts)
            # Every reading stored, at its own (true) time, whatever the collector thinks.
            stored = wait_until(
                at_least(len(stream.sent_ts), lambda: stored_ts(influx, tmp_db)),
                timeout=30,
                message="every reading stored",
            )
            assert sorted(stored) == stream.sent_ts  # each once, at its own (true) ts
    finally:
        alerts.close()


def test_a_collector_behind_quarantines_future_readings_alerts_on_them_and_replay_stores_them(
    tmp_path: Path, broker: MosquittoServer, influx: InfluxServer, tmp_db: str
):
    config, settings = config_for(tmp_path, broker, influx, tmp_db)
    dead = Listener(settings, broker, DEADLETTER)
    alerts = Listener(settings, broker, ALERTS)
    try:
        with skewed_collector(tmp_path, broker, config, "-10m"), publisher(settings) as pub:
            stream = Stream(pub)
            fires_and_resolves(stream, alerts)  # not blind while its clock is wrong
            letters = wait_until(
                at_least(len(stream.sent_ts), dead.json), message="every reading dead-lettered"
            )
    finally:
        dead.close()
        alerts.close()
    assert {d["reason"] for d in letters} == {"future_ts"}
    assert stored_ts(influx, tmp_db) == []  # nothing stored at a time the collector doubts

    # The clock is put right; the kept readings are replayed through the running collector.
    fleet = str(Path(sys.executable).with_name("fleet"))
    with skewed_collector(tmp_path, broker, config, "+0m"):
        replay = subprocess.run(
            [fleet, "deadletters", "replay", "--config", str(config), "--reason", "future_ts"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert replay.returncode == 0, replay.stderr
        stored = wait_until(
            at_least(len(stream.sent_ts), lambda: stored_ts(influx, tmp_db)),
            timeout=30,
            message="every replayed reading stored",
        )
    assert sorted(stored) == stream.sent_ts  # each once, at its own (true) ts
