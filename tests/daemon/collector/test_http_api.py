"""The collector's HTTP API over a real socket, in the whole collector on a real broker and
InfluxDB: health, open alerts, acknowledgement, silences. Every route, method and body rule on
its own: tests/daemon/collector/test_http_routes.py."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from fleet.daemon.collector.http.auth import hash_password
from tests.harness.fleet import (
    Listener,
    publisher,
    running_collector,
    set_keys,
    settings_from,
    telemetry,
    write_config,
)
from tests.harness.waiting import wait_until

TOPIC = "fleet/v1/allingtown/segway/sw-05/telemetry"


USER, PASSWORD = "sgt.reyes", "a long password"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def call(
    port: int, path: str, body: dict[str, Any] | None = None, *, signed_in: bool = True
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if body is not None else "GET"
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if signed_in:  # every change needs a user (HTTP Basic here; sessions: tests/.../http/)
        request.add_header("Authorization", BASIC)
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
    config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    hashed = hash_password(PASSWORD, n=1024)
    text = config.read_text()
    assert 'bind = "127.0.0.1:0"\n' in text
    config.write_text(
        text.replace(
            'bind = "127.0.0.1:0"\n', f'bind = "127.0.0.1:0"\nusers = {{ "{USER}" = "{hashed}" }}\n'
        )
    )
    return settings_from(config)


def test_health_alerts_and_acknowledgement(settings, mqtt_broker):
    alerts = Listener(settings, mqtt_broker, "fleet/v1/allingtown/alerts/sw-05/#")
    try:
        with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
            port = collector.web.http.port
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

            refused = call(port, "/alerts/sw-05/battery_critical/ack", {}, signed_in=False)
            assert refused[0] == 401
            status, answer = call(port, "/alerts/sw-05/battery_critical/ack", {"by": "Sgt. Reyes"})
            assert status == 202
            assert answer["by"] == USER  # the signed-in user, not a name in the body
            acked = wait_until(
                lambda: [a for a in call(port, "/alerts")[1] if a["acknowledged_by"] == USER],
                timeout=10,
                message="acknowledged in the API",
            )
            assert acked[0]["rule"] == "battery_critical"

            def retained_ack() -> bool:
                payloads = alerts.json()
                return any(
                    p["rule"] == "battery_critical" and p["acknowledged_by"] == USER
                    for p in payloads
                )

            wait_until(retained_ack, timeout=10, message="acknowledgement on the alert topic")
            assert call(port, "/nowhere")[0] == 404
    finally:
        alerts.close()


def test_a_silence_mutes_notifications_but_not_the_alert(settings, mqtt_broker):
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        port = collector.web.http.port
        assert call(port, "/silences", {"device": "sw-06", "hours": 2})[0] == 400  # no reason
        assert call(port, "/silences", {"device": "sw-06", "reason": "x", "hours": 2},
                    signed_in=False)[0] == 401  # fmt: skip
        assert (
            call(
                port,
                "/silences",
                {"device": "sw-06", "reason": "x", "by": "y", "until": "2030-01-01T00:00"},
            )[0]
            == 400
        )
        assert call(port, "/silences", {"reason": "in repair", "by": "Tech", "hours": 2})[0] == 400
        status, silence = call(
            port,
            "/silences",
            {"device": "sw-06", "reason": "in repair", "by": "Tech Ortiz", "hours": 2},
        )
        assert status == 201
        assert (silence["device"], silence["rule"], silence["by"]) == ("sw-06", None, USER)
        assert call(port, "/silences")[1] == [silence]

        now = int(time.time() * 1000)
        pub.publish("fleet/v1/allingtown/segway/sw-06/telemetry", telemetry("sw-06", 1, now, pct=4))
        pub.publish(TOPIC, telemetry("sw-05", 1, now, pct=4))

        def fired() -> list[str]:
            return sorted(
                a["device"] for a in call(port, "/alerts")[1] if a["rule"] == "battery_critical"
            )

        wait_until(lambda: fired() == ["sw-05", "sw-06"], timeout=15, message="both alerts fire")
        alerts = collector.alerts
        assert alerts is not None
        # Both published (an event counts before its notification is decided) ...
        wait_until(lambda: alerts.counters.events >= 2, timeout=10, message="both published")

        status, removed = call_delete(port, f"/silences/{silence['id']}")
        assert (status, removed) == (200, {"removed": silence["id"]})
        assert call(port, "/silences")[1] == []
        assert call_delete(port, f"/silences/{silence['id']}")[0] == 404
        # ... and of the two, only sw-05's was told to people.
        assert alerts.counters.notified == 1


def call_delete(port: int, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="DELETE")
    request.add_header("Authorization", BASIC)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_taken_http_port_stops_the_collector_with_a_clear_reason(
    tmp_path, mqtt_broker, influx, tmp_db
):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
        set_keys(config, {"http.bind": f"127.0.0.1:{port}"})
        fleet = str(Path(sys.executable).with_name("fleet"))
        result = subprocess.run(
            [fleet, "collector", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot start the collector" in result.stderr
    assert "Address already in use" in result.stderr
