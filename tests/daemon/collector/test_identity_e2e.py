"""The collector checks identity itself (issue 11, item 4), end to end.

A real Mosquitto that lets every client in (a broker the fleet does not configure), the
whole collector, a real InfluxDB: an OwnTracks user cannot report as a registered device,
a retained `offline` from an agent nobody registered does not hold a site's offline
alerts, and an acknowledgement on another site's topic changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.collector.app import Collector
from fleet.daemon.collector.deadletters import Query, open_read_only, select
from fleet.daemon.collector.metrics import collector_metrics
from tests.harness.alerting import AlertTopics, ack_topic, agent_topic, rig
from tests.harness.fleet import Listener, publisher, running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

MIN = 60
REGISTRY = """
[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "hh-02"
kind = "handheld"
site = "westhaven"
owntracks = "reyes/hh-02"

[[agents]]
id = "agent-1"
devices = ["sw-01"]
"""


@pytest.fixture
def mqtt_broker(make_broker: Callable[..., MosquittoServer]) -> MosquittoServer:
    """Its own broker: the retained availability these tests leave must not reach others."""
    return make_broker()


@pytest.fixture
def settings(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str
) -> FleetSettings:
    return settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db, extra=REGISTRY)
    )


def location(ts_s: float, batt: int) -> bytes:
    return json.dumps(
        {"_type": "location", "batt": batt, "lat": 41.27, "lon": -72.95, "tst": int(ts_s)}
    ).encode()


def metric(collector: Collector, name: str) -> float:
    (found,) = [m for m in collector_metrics(collector) if m.name == name]
    ((_, value),) = found.samples
    return value


def test_owntracks_as_a_registered_device_is_dead_lettered_and_the_registered_pair_stored(
    settings, mqtt_broker, influx, tmp_db, tmp_path
):
    now = time.time()
    dead = Listener(settings, mqtt_broker, "fleet/v1/+/deadletter")
    try:
        with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
            pub.publish("owntracks/mallory/sw-01", location(now, 3))
            pub.publish("owntracks/reyes/hh-02", location(now, 64))

            def stored():
                return influx.rows("SELECT pct, site, kind, device FROM battery", tmp_db)

            rows = wait_until(stored, timeout=30, message="reyes/hh-02 in InfluxDB")
            letters = wait_until(dead.json, timeout=20, message="the dead letter")
            c = collector.ingest.counters
            assert c.rejected[wire.Reason.REGISTRY_MISMATCH] == 1
            assert c.accepted == 1
        kept = select(open_read_only(collector.deadletters.path), Query())
    finally:
        dead.close()
    # Only Reyes's phone is stored, as hh-02 at its own site; nothing as sw-01.
    assert [(r["device"], r["site"], r["kind"], r["pct"]) for r in rows] == [
        ("hh-02", "westhaven", "handheld", 64.0)
    ]
    detail = (
        '"owntracks/mallory/sw-01" is not the registered OwnTracks identity of device "sw-01" '
        "(sw-01 has none); not stored as sw-01"
    )
    (letter,) = letters
    assert (letter["topic"], letter["reason"], letter["detail"]) == (
        "owntracks/mallory/sw-01",
        "registry_mismatch",
        detail,
    )
    assert [(k.topic, k.reason, k.detail, k.site, k.replayable) for k in kept] == [
        ("owntracks/mallory/sw-01", "registry_mismatch", detail, "allingtown", True)
    ]


def test_a_retained_offline_from_an_unregistered_agent_holds_no_offline_alert(
    settings, mqtt_broker, influx, tmp_db
):
    # Left on the broker before the collector starts, as a hostile client would.
    with publisher(settings, "rogue") as rogue:
        rogue.publish(agent_topic("rogue"), b"offline", qos=1, retain=True)
    with rig(settings, mqtt_broker, int(time.time() * 1000)) as r:
        collector = r.collector
        assert collector is not None
        assert collector.alerts is not None
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-01", pct=80.0)
            counters = collector.alerts.counters
            wait_until(
                lambda: counters.availability_ignored == 1,
                timeout=20,
                message="the retained offline heard and ignored",
            )
            r.advance(10 * MIN + 1)  # the kind's expected silence (offline_after_s) is 10 min
            fired = topics.wait("sw-01", "offline", "firing")
            # Counted where people look: /metrics and the `pipeline` measurement.
            assert metric(collector, "fleet_alert_availability_ignored_total") == 1

            def in_pipeline():
                return influx.rows(
                    "SELECT last(alert_availability_ignored) FROM pipeline "
                    "WHERE device = '' AND alert_availability_ignored > 0",
                    tmp_db,
                )

            (point,) = wait_until(in_pipeline, timeout=30, message="the counter in pipeline")
        finally:
            topics.close()
    assert fired["site"] == "allingtown"
    assert point["last"] == 1
    assert not [a for a in topics.history if a["rule"] == "agent_down"]


def test_an_ack_on_another_sites_topic_changes_nothing(settings, mqtt_broker):
    with rig(settings, mqtt_broker, int(time.time() * 1000)) as r:
        collector = r.collector
        assert collector is not None
        assert collector.alerts is not None
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-01", pct=5.0)
            fired = topics.wait("sw-01", "battery_critical", "firing")
            r.pub.publish(
                ack_topic("sw-01", "battery_critical", site="westhaven"), b"Mallory", qos=1
            )
            counters = collector.alerts.counters
            wait_until(lambda: counters.bad_control == 1, timeout=20, message="refused")
            (alert,) = [a for a in collector.alerts.engine.alerts() if a.device == "sw-01"]
            assert alert.acknowledged_by is None
            r.pub.publish(ack_topic("sw-01", "battery_critical"), b"Sgt. Reyes", qos=1)
            acked = topics.wait("sw-01", "battery_critical", "firing", acknowledged_by="Sgt. Reyes")
            r.wait_delivered()
        finally:
            topics.close()
    assert fired["acknowledged_by"] is None
    # Two publications of the alert: fired, then acknowledged by the one on its own site.
    assert [a["acknowledged_by"] for a in topics.of("sw-01", "battery_critical")] == [
        None,
        "Sgt. Reyes",
    ]
    assert acked["site"] == "allingtown"
    assert (counters.bad_control, counters.acks) == (1, 1)
