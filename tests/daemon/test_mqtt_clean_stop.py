"""A clean stop of the MQTT link logs no error of its own making, on a real Mosquitto.

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


def test_the_same_error_from_a_link_that_is_not_stopping_is_still_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The filter is keyed on the stopping link's thread: paho losing its socket on its
    # own (not our stop) must still reach the log.
    with caplog.at_level(logging.ERROR, logger="paho"):
        logging.getLogger("paho").error(
            "Client is not connected. Socket: None). Last known Connection State: %s", "X"
        )
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
