"""The collector under systemd's eye: a real datagram socket posing as $NOTIFY_SOCKET, a real
broker and InfluxDB. READY only once MQTT is connected and HTTP serves; STATUS in words; the
WATCHDOG=1 pings stop while the ingest thread is wedged or MQTT is down, and resume after.

Each notifier tick sends one datagram, so "no ping for N intervals" is counted in datagrams
(or in ticks the test drives itself), never left to timing."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fleet.daemon import wire
from fleet.daemon.collector.app import Collector
from fleet.daemon.liveness import ServiceNotifier
from fleet.daemon.mqtt import MqttLink
from tests.harness.fleet import (
    publisher,
    running_collector,
    set_keys,
    settings_from,
    telemetry,
    write_config,
)
from tests.harness.process import free_port, spawn, stop_process, tail
from tests.harness.sdnotify import Datagram, NotifySocket
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

FLEET = str(Path(sys.executable).with_name("fleet"))
TOPIC = "fleet/v1/allingtown/segway/sw-31/telemetry"
QUIET_TICKS = 5  # intervals counted without a ping while the fault lasts
HEALTHY = re.compile(r"^[\d,]+ msg/s, spool [\d,]+ points, InfluxDB ok, MQTT connected$")


@pytest.fixture
def sock(tmp_path: Path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


def pinged(d: Datagram) -> bool:
    return d.get("WATCHDOG") == "1"


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def test_fleet_collector_is_ready_once_connected_and_pings_only_while_mqtt_is_up(
    tmp_path: Path, sock: NotifySocket, make_broker, influx: InfluxServer, tmp_db: str
):
    broker: MosquittoServer = make_broker()
    broker.stop()  # the collector starts before its broker
    port = free_port()
    config = write_config(tmp_path, broker=broker, influx=influx, database=tmp_db)
    set_keys(config, {"http.bind": f"127.0.0.1:{port}"})
    log = tmp_path / "collector.log"
    # 0.4 s: a ping every 0.2 s, so one tick - one datagram - every 0.2 s.
    env = {**os.environ, **sock.env(watchdog_s=0.4)}
    proc = spawn([FLEET, "collector", "--config", str(config)], log, env=env)
    try:
        first = sock.wait_for(lambda d: True, message=f"a first word\n{tail(log)}")
        assert first == {"STATUS": f"starting: connecting to MQTT broker 127.0.0.1:{broker.port}"}
        broker.start()
        ready = sock.wait_for(lambda d: "READY" in d, message=f"READY\n{tail(log)}")
        # Everything before READY was that one STATUS (sent on change only), no ping.
        assert sock.received[:-1] == [first]
        assert healthz(port)["mqtt_connected"] is True  # HTTP serves when READY says so
        assert pinged(ready), ready
        assert HEALTHY.match(ready["STATUS"]), ready

        with publisher(settings_from(config)) as pub:
            pub.publish(TOPIC, telemetry("sw-31", 1, int(time.time() * 1000)))
        sock.wait_for(
            lambda d: pinged(d) and bool(re.match(r"^[1-9][\d,]* msg/s", d["STATUS"])),
            message="a STATUS counting the message",
        )

        broker.stop()
        down = sock.wait_for(lambda d: "MQTT disconnected" in d["STATUS"], message="MQTT down")
        quiet = sock.next(QUIET_TICKS)
        assert not any(pinged(d) for d in [down, *quiet]), [down, *quiet]
        assert all(
            re.match(r"^MQTT disconnected for \d+ s; [\d,]+ msg/s, spool", d["STATUS"])
            for d in quiet
        ), quiet

        broker.start()
        back = sock.wait_for(pinged, message=f"pings after the broker is back\n{tail(log)}")
        assert HEALTHY.match(back["STATUS"]), back
    finally:
        code = stop_process(proc, timeout=60)
    assert code == 0, tail(log)
    sock.drain()
    last = sock.received[-1]
    assert last == {
        "STOPPING": "1",
        "STATUS": "stopping: writing what it can of the spool to InfluxDB",
    }
    assert sock.received.count(last) == 1


def wedge_observe(collector: Collector) -> tuple[threading.Event, threading.Event]:
    """Make the next spooled batch block the ingest thread in the board's hook."""
    entered, release = threading.Event(), threading.Event()

    def wedged_in_observe(readings: list[wire.DecodedReading]) -> None:
        entered.set()
        release.wait(60)

    collector.web.observe = wedged_in_observe  # type: ignore[method-assign]
    return entered, release


def notifier_of(collector: Collector) -> ServiceNotifier:
    notifier = collector.systemd.notifier
    assert notifier is not None, "no notifier: NOTIFY_SOCKET was not seen"
    return notifier


def test_the_pings_stop_while_the_ingest_thread_is_wedged_and_resume_after(
    tmp_path: Path, sock: NotifySocket, mqtt_broker, influx, tmp_db, monkeypatch, caplog
):
    # A long watchdog period: the notifier's own thread ticks every 5 s; the test drives
    # the ticks it counts.
    for key, value in sock.env(watchdog_s=3600).items():
        monkeypatch.setenv(key, value)
    settings = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    )
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        notifier = notifier_of(collector)
        collector.systemd.watch.allowances["ingest"] = 1.0  # 30 s in production
        sock.wait_for(lambda d: "READY" in d, message="READY")
        assert "WATCHDOG=1" in (notifier.tick() or "")

        entered, release = wedge_observe(collector)
        try:
            check_the_wedge(collector, notifier, sock, pub, entered, release, caplog)
        finally:
            release.set()  # a failed check must not leave the thread blocked


def check_the_wedge(
    collector: Collector,
    notifier: ServiceNotifier,
    sock: NotifySocket,
    pub: MqttLink,
    entered: threading.Event,
    release: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub.publish(TOPIC, telemetry("sw-31", 1, int(time.time() * 1000)))
    assert entered.wait(10), "the ingest thread never reached the board's hook"
    with caplog.at_level(logging.ERROR, logger="fleet.daemon.liveness"):
        wait_until(
            lambda: [n for n, _ in collector.systemd.watch.stale()] == ["ingest"],
            message="ingest seen as stalled",
        )
        sent = [notifier.tick() or "" for _ in range(QUIET_TICKS)]
    assert not any("WATCHDOG=1" in s for s in sent), sent
    assert all(re.search(r"STATUS=ingest stalled for \d+ s; ", s) for s in sent), sent
    # Whatever the notifier's own thread sent meanwhile obeys the same rule.
    seen = sock.drain()
    first = next(i for i, d in enumerate(seen) if "ingest stalled" in d["STATUS"])
    assert not any(pinged(d) for d in seen[first:]), seen
    # The journal says which part and where it is stuck.
    assert "ingest has not turned for" in caplog.text
    assert "in wedged_in_observe" in caplog.text

    release.set()
    wait_until(lambda: not collector.systemd.watch.stale(), message="ingest turns again")
    resumed = notifier.tick() or ""
    assert "WATCHDOG=1" in resumed, resumed
    assert "stalled" not in resumed, resumed


def test_influxdb_away_is_no_reason_to_stop_pinging(
    tmp_path: Path, sock: NotifySocket, mqtt_broker, influx, tmp_db, monkeypatch
):
    for key, value in sock.env(watchdog_s=3600).items():
        monkeypatch.setenv(key, value)
    config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    # Nothing listens on that port: every write fails, the spool keeps the readings.
    set_keys(config, {"influx.url": f"http://127.0.0.1:{free_port()}"})
    settings = settings_from(config)
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        notifier = notifier_of(collector)
        pub.publish(TOPIC, telemetry("sw-31", 1, int(time.time() * 1000)))
        wait_until(lambda: collector.writer.failing_for_s is not None, message="writes failing")
        sent = [notifier.tick() or "" for _ in range(QUIET_TICKS)]
    assert all("WATCHDOG=1" in s for s in sent), sent
    assert all(
        re.search(
            r"STATUS=InfluxDB failing for \d+ s; [\d,]+ msg/s, spool [\d,]+ points, MQTT connected",
            s,
        )
        for s in sent
    ), sent


def test_without_notify_socket_nothing_runs(
    tmp_path: Path, mqtt_broker, influx, tmp_db, monkeypatch
):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    settings = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    )
    with running_collector(settings, mqtt_broker) as collector:
        assert collector.systemd.notifier is None
        assert not [t for t in threading.enumerate() if t.name == "sd-notify"]
