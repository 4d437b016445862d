"""The MQTT link's stop and retries log no error of paho's repeating what the link said.

paho's thread goes round its loop once more after our DISCONNECT closed the socket
whenever a QoS 1 publish is still unacknowledged, and logs ERROR "Client is not
connected". Freezing the broker (SIGSTOP) keeps the publish unacknowledged, so the stop
meets that path every time instead of about half of the time."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from fleet.config import load_settings
from fleet.daemon.mqtt import MqttLink
from tests.harness.fleet import write_config
from tests.harness.waiting import wait_until


def _stop_with_a_publish_in_flight(link: MqttLink, broker_pid: int) -> None:
    os.kill(broker_pid, signal.SIGSTOP)  # connected, but no PUBACK comes back
    try:
        link.publish("fleet/v1/allingtown/segway/sw-01/availability", b"online", retain=True)
        wait_until(lambda: link.unacknowledged() == 1, message="the publish is in flight")
        link.stop()
    finally:
        os.kill(broker_pid, signal.SIGCONT)


def test_a_clean_stop_with_a_publish_in_flight_logs_no_paho_error(
    tmp_path, make_broker, influx, tmp_db, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker()
    settings = load_settings(write_config(tmp_path, broker=broker, influx=influx, database=tmp_db))
    link = MqttLink(settings.mqtt, client_id="test-clean-stop")
    link.start()
    assert link.wait_connected(10)
    assert broker.pid is not None
    with caplog.at_level(logging.DEBUG, logger="paho"):
        _stop_with_a_publish_in_flight(link, broker.pid)
    paho_lines = [r.getMessage() for r in caplog.records if r.name == "paho"]
    # The DISCONNECT went out (paho says so at DEBUG): the stop took the path in question.
    assert any("Sending DISCONNECT" in line for line in paho_lines), paho_lines
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def test_retries_while_the_broker_is_away_log_no_paho_error(
    tmp_path, make_broker, influx, tmp_db, caplog: pytest.LogCaptureFixture
) -> None:
    # paho logs "Client is not connected" at every retry without a socket; the link's own
    # WARNING says it once (daemon/mqtt_link_log.py).
    broker = make_broker()
    broker.stop()  # nothing listens on its port now
    settings = load_settings(write_config(tmp_path, broker=broker, influx=influx, database=tmp_db))
    link = MqttLink(settings.mqtt, client_id="test-away")
    with caplog.at_level(logging.DEBUG, logger="paho"):
        link.start()
        try:
            wait_until(
                lambda: sum("Connection failed" in r.getMessage() for r in caplog.records) >= 3,
                timeout=30,
                message="three failed attempts",
            )
        finally:
            link.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "fleet.daemon.mqtt"]
    assert len(warnings) == 1, warnings
    assert "Connection refused" in warnings[0]


def test_other_paho_errors_still_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="paho"):
        logging.getLogger("paho").error("failed to receive on socket: %s", "boom")
        logging.getLogger("paho").error("Client is not connected. Socket: None).")
    assert [r.getMessage() for r in caplog.records] == ["failed to receive on socket: boom"]
