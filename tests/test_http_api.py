"""The collector's HTTP API over a real socket: health, open alerts, acknowledgement."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.harness.fleet import (
    Listener,
    publisher,
    running_collector,
    settings_from,
    telemetry,
    write_config,
)
from tests.harness.waiting import wait_until

TOPIC = "fleet/v1/allingtown/segway/sw-05/telemetry"


def call(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if body is not None else "GET"
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def mqtt_broker(make_broker):
    """Its own broker: other tests' retained availability messages would raise alerts here."""
    return make_broker()


@pytest.fixture
def settings(tmp_path, mqtt_broker, influx, tmp_db):
    return settings_from(write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db))


def test_health_alerts_and_acknowledgement(settings, mqtt_broker):
    alerts = Listener(settings, mqtt_broker, "fleet/v1/allingtown/alerts/sw-05/#")
    try:
        with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
            port = collector.http.port
            status, health = call(port, "/healthz")
            assert status == 200
            assert health["mqtt_connected"] is True

            pub.publish(TOPIC, telemetry("sw-05", 1, int(time.time() * 1000), pct=4))
            firing = wait_until(
                lambda: call(port, "/alerts")[1], timeout=15, message="critical alert open"
            )
            assert [(a["device"], a["rule"], a["state"]) for a in firing] == [
                ("sw-05", "battery_critical", "firing")
            ]

            assert call(port, "/alerts/sw-05/battery_critical/ack", {})[0] == 400
            status, answer = call(port, "/alerts/sw-05/battery_critical/ack", {"by": "Sgt. Reyes"})
            assert status == 202
            assert answer["by"] == "Sgt. Reyes"
            acked = wait_until(
                lambda: [
                    a for a in call(port, "/alerts")[1] if a["acknowledged_by"] == "Sgt. Reyes"
                ],
                timeout=10,
                message="acknowledged in the API",
            )
            assert acked[0]["rule"] == "battery_critical"

            def retained_ack() -> bool:
                payloads = alerts.json()
                return any(
                    p["rule"] == "battery_critical" and p["acknowledged_by"] == "Sgt. Reyes"
                    for p in payloads
                )

            wait_until(retained_ack, timeout=10, message="acknowledgement on the alert topic")
            assert call(port, "/nowhere")[0] == 404
    finally:
        alerts.close()
