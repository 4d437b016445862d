"""The collector's MQTT options on a real Mosquitto: MQTT 3.1.1 sessions and TLS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon.collector.app import Collector
from tests.harness.certs import make_pki
from tests.harness.fleet import publisher, running_collector, telemetry, write_config
from tests.harness.process import free_port
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

TOPIC = "fleet/v1/allingtown/segway/sw-09/telemetry"


def stored_seqs(influx, db: str) -> list[int]:
    return sorted(r["seq"] for r in influx.rows("SELECT seq FROM battery", db))


def test_mqtt_3_1_1_keeps_the_session_across_a_collector_restart(
    tmp_path, make_broker, influx, tmp_db
):
    broker = make_broker()
    config = write_config(tmp_path, broker=broker, influx=influx, database=tmp_db)
    settings = load_settings(config, environ={"FLEET_MQTT__PROTOCOL": "3.1.1"})
    assert settings.mqtt.protocol == "3.1.1"
    now = int(time.time() * 1000)
    with running_collector(settings, broker), publisher(settings) as pub:
        pub.publish(TOPIC, telemetry("sw-09", 1, now))
        wait_until(lambda: stored_seqs(influx, tmp_db) == [1], timeout=20, message="seq 1 stored")
    # The collector is away: the broker queues for its persistent (clean_session=False) session.
    with publisher(settings) as pub:
        for seq in range(2, 7):
            pub.publish(TOPIC, telemetry("sw-09", seq, now + seq))
    with running_collector(settings, broker):
        wait_until(
            lambda: stored_seqs(influx, tmp_db) == [1, 2, 3, 4, 5, 6],
            timeout=20,
            message="the readings queued while it was away",
        )


def _tls_setup(
    tmp_path: Path, make_broker: Any, influx: Any, database: str, *, trusted_ca: Path | None = None
) -> tuple[MosquittoServer, FleetSettings]:
    """A broker with a TLS listener (certificate signed by a test CA), and collector settings
    that reach it over TLS trusting `trusted_ca` (default: that same CA)."""
    ca, cert, key = make_pki(tmp_path)
    tls_port = free_port()
    broker = make_broker(
        extra_config=f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    )
    config = write_config(
        tmp_path,
        broker=broker,
        influx=influx,
        database=database,
        extra=f'[mqtt.tls]\nenabled = true\nca_file = "{trusted_ca or ca}"\n',
    )
    return broker, load_settings(config, environ={"FLEET_MQTT__PORT": str(tls_port)})


def test_readings_arrive_over_tls(tmp_path, make_broker, influx, tmp_db):
    broker, settings = _tls_setup(tmp_path, make_broker, influx, tmp_db)
    with running_collector(settings, broker) as collector, publisher(settings) as pub:
        pub.publish(TOPIC, telemetry("sw-09", 7, int(time.time() * 1000)))
        wait_until(lambda: stored_seqs(influx, tmp_db) == [7], timeout=20, message="stored via TLS")
        assert collector.link.connected


# paho (2.2) does not close the socket of a TLS handshake that failed verification; the
# ResourceWarning it leaves is paho's, not the collector's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_refuses_a_broker_it_cannot_verify(tmp_path, make_broker, influx, tmp_db):
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_pki(tmp_path / "other")
    _, settings = _tls_setup(tmp_path, make_broker, influx, tmp_db, trusted_ca=other_ca)
    collector = Collector(settings)
    undo = collector.start()
    try:
        # It keeps trying (and keeps its spool), but never talks to an unverified broker.
        assert not collector.link.wait_connected(3)
    finally:
        undo()
