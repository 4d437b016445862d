"""The collector blind: its own broker stopped, so its alert engine judges no silence it could
not see (daemon/alerts/offline.py), through the real wiring - MqttLink's disconnect and
connect hooks, the collector, the alert thread - on a real Mosquitto and a FakeClock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleet.config.alerts import Rule
from fleet.daemon.alerts.model import Action
from tests.harness.alerting import local_ms, rig
from tests.harness.fleet import settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

MIN = 60
WINDOW_S = 10 * MIN  # the default offline_after_s


def test_a_stopped_broker_is_no_evidence_and_each_device_gets_a_window_from_the_reconnect(
    tmp_path: Path, make_broker: Callable[..., MosquittoServer], influx: InfluxServer, tmp_db: str
):
    broker = make_broker()
    path = write_config(tmp_path, broker=broker, influx=influx, database=tmp_db)
    settings = settings_from(path)
    fleet = [f"sw-4{i}" for i in range(4)]
    with rig(settings, broker, local_ms("21:00")) as r:
        assert r.collector is not None
        engine = r.collector.alerts.engine if r.collector.alerts else None
        assert engine is not None
        probe = r.probe_or_fail()
        for device in fleet:
            r.send("segway", device, pct=80.0)
        broker.stop()
        lost_ms = r.clock.now_ms
        wait_until(lambda: engine.counters.blind_spells == 1, timeout=30, message="blind")
        # Two hours of the collector's clock without a word: every window runs out unseen.
        for _ in range(4):
            r.advance(30 * MIN)
        broker.start()  # same port, same persistence
        wait_until(lambda: engine.counters.blind_ms > 0, timeout=30, message="seeing again")
        back_ms = lost_ms + 4 * 30 * MIN * 1000
        assert engine.counters.blind_ms == back_ms - lost_ms
        r.advance(WINDOW_S - MIN)  # within the window from T1: nothing yet
        for device in fleet[:2]:  # the backlog, then live readings, of two of them
            r.send("segway", device, pct=79.0)
        r.advance(2 * MIN)  # past the window from T1
        with probe._lock:
            offline = sorted(
                (e.alert.device, e.alert.since_ms)
                for e in probe.events
                if e.alert.rule == Rule.OFFLINE and e.action is Action.FIRE
            )
    # Only the two that stayed silent, and only once the window from T1 had run out.
    assert [d for d, _ in offline] == fleet[2:]
    assert all(since > back_ms + WINDOW_S * 1000 for _, since in offline), offline
