"""The readiness board's JSON API in the whole collector, on a real broker and InfluxDB: devices
judged from what was published, the sign-out sheet's rules as JSON refusals a person can act on,
the `assignment` and `audit` points in InfluxDB, the overdue warning on the alert topic, the old
alert paths still answering, and /metrics. Each route's rules alone: tests/daemon/board/."""

from __future__ import annotations

import gzip
import json
import time
import urllib.request
from datetime import datetime

import pytest

from fleet.daemon.board.service import OVERDUE_RULE
from tests.daemon.collector.test_http_api import USER, call
from tests.daemon.collector.test_http_api import settings as settings  # the fixture
from tests.harness.fleet import Listener, publisher, running_collector, telemetry
from tests.harness.waiting import wait_until

H = 3_600_000
SITE = "allingtown"


@pytest.fixture
def mqtt_broker(make_broker):
    """Its own broker: other tests' retained alerts and availability would show here."""
    return make_broker()


def _topic(device: str) -> str:
    return f"fleet/v1/{SITE}/segway/{device}/telemetry"


def _parse(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_devices_sign_out_and_back_with_points_in_influxdb(settings, mqtt_broker, influx, tmp_db):
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        port = collector.web.http.port
        now = int(time.time() * 1000)
        pub.publish(_topic("sw-05"), telemetry("sw-05", 1, now - 5_000, pct=91))
        pub.publish(_topic("sw-06"), telemetry("sw-06", 1, now - 5_000, pct=35))

        def both() -> list[dict[str, object]]:
            items = call(port, "/api/v1/devices")[1]
            return items if {i["device"] for i in items} >= {"sw-05", "sw-06"} else []

        items = wait_until(both, timeout=15, message="both devices on the board")
        first, second = items[0], items[1]
        assert (first["device"], first["state"], first["kind"], first["site"]) == (
            "sw-05",
            "ready",
            "segway",
            SITE,
        )
        assert first["charge_pct"] == 91.0
        assert first["range_km"] is not None
        assert first["signed_out_to"] is None
        assert abs(_parse(str(first["last_seen"])) - (now - 5_000) / 1000) < 0.01
        assert (second["device"], second["state"]) == ("sw-06", "low")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/devices", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            zipped = json.loads(gzip.decompress(answer.read()))
        assert [(i["device"], i["state"]) for i in zipped] == [("sw-05", "ready"), ("sw-06", "low")]
        assert "35 % - below the 60 % a Segway needs for an 8-hour shift" in str(second["reason"])

        # Changes need a user; refusals are JSON with a reason.
        refused = call(
            port, "/api/v1/assignments", {"device": "sw-05", "officer": "Diaz"}, signed_in=False
        )
        assert refused[0] == 401
        assert "error" in refused[1]
        status, out = call(
            port, "/api/v1/assignments", {"device": "sw-05", "officer": "Officer Diaz", "hours": 8}
        )
        assert status == 201, out
        assert (out["officer"], out["by"]) == ("Officer Diaz", USER)
        twice = call(port, "/api/v1/assignments", {"device": "sw-05", "officer": "Officer Kim"})
        assert twice[0] == 409
        assert "already signed out to Officer Diaz" in twice[1]["error"]

        (item,) = [i for i in call(port, "/api/v1/devices")[1] if i["device"] == "sw-05"]
        assert (item["state"], item["signed_out_to"]) == ("in_use", "Officer Diaz")
        status, one = call(port, "/api/v1/devices/sw-05")
        assert status == 200
        assert one["history"]
        assert one["history"][-1][1] == 91.0
        assert [a["action"] for a in one["assignments"]] == ["sign_out"]
        (listed,) = call(port, "/api/v1/assignments")[1]
        assert (listed["device"], listed["overdue"]) == ("sw-05", False)

        assert call(port, "/api/v1/assignments/sw-05/return", {})[0] == 200
        again = call(port, "/api/v1/assignments/sw-05/return", {})
        assert again[0] == 409
        assert again[1]["error"] == "sw-05 is not signed out, so it cannot be signed in"
        assert call(port, "/api/v1/devices/sw-77")[0] == 404

        def points(measurement: str, n: int) -> list[dict[str, object]]:
            rows = influx.rows(f'SELECT * FROM "{measurement}"', tmp_db)
            return rows if len(rows) >= n else []

        changes = wait_until(
            lambda: points("assignment", 2), timeout=15, message="two assignment points"
        )
        assert [(p["change"], p["device"], p["kind"], p["officer"]) for p in changes] == [
            ("out", "sw-05", "segway", "Officer Diaz"),
            ("in", "sw-05", "segway", "Officer Diaz"),
        ]
        audit = wait_until(lambda: points("audit", 2), timeout=15, message="the audit points")
        assert [(p["action"], p["user"], p["target"]) for p in audit] == [
            ("sign_out", USER, "sw-05"),
            ("sign_in", USER, "sw-05"),
        ]


def test_an_overdue_sign_out_raises_a_warning_that_the_sign_in_resolves(
    settings, mqtt_broker, influx, tmp_db
):
    alerts = Listener(settings, mqtt_broker, f"fleet/v1/{SITE}/alerts/sw-05/#")
    try:
        with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
            port = collector.web.http.port
            now = int(time.time() * 1000)
            pub.publish(_topic("sw-05"), telemetry("sw-05", 1, now, pct=95))
            wait_until(
                lambda: call(port, "/api/v1/devices/sw-05")[0] == 200, timeout=15, message="heard"
            )
            status, _ = call(
                port, "/api/v1/assignments", {"device": "sw-05", "officer": "Officer Kim"}
            )
            assert status == 201
            # The board's tick, as its loop calls it, two shifts later.
            collector.web.board.tick(now + 16 * H)
            fired = wait_until(
                lambda: [a for a in alerts.json() if a["rule"] == OVERDUE_RULE],
                timeout=10,
                message="the overdue warning on the alert topic",
            )
            assert (fired[0]["state"], fired[0]["severity"]) == ("firing", "warning")
            assert "signed out to Officer Kim was due back at" in fired[0]["message"]
            listed = [a for a in call(port, "/api/v1/alerts")[1] if a["rule"] == OVERDUE_RULE]
            assert [(a["device"], a["state"]) for a in listed] == [("sw-05", "firing")]

            assert call(port, "/api/v1/assignments/sw-05/return", {})[0] == 200
            resolved = wait_until(
                lambda: [
                    a
                    for a in alerts.json()
                    if a["rule"] == OVERDUE_RULE and a["state"] == "resolved"
                ],
                timeout=10,
                message="resolved at the sign-in",
            )
            assert "signed back in" in resolved[0]["message"]
            assert [a for a in call(port, "/api/v1/alerts")[1] if a["rule"] == OVERDUE_RULE] == []
            stored = wait_until(
                lambda: influx.rows(
                    f"SELECT state FROM alert WHERE rule = '{OVERDUE_RULE}'", tmp_db
                ),
                timeout=15,
                message="the alert points",
            )
            assert [p["state"] for p in stored][-2:] == ["firing", "resolved"]
    finally:
        alerts.close()


def test_old_alert_paths_answer_as_v1_acks_are_audited_and_metrics_count_the_board(
    settings, mqtt_broker, influx, tmp_db
):
    with running_collector(settings, mqtt_broker) as collector, publisher(settings) as pub:
        port = collector.web.http.port
        pub.publish(_topic("sw-05"), telemetry("sw-05", 1, int(time.time() * 1000), pct=4))
        firing = wait_until(
            lambda: call(port, "/api/v1/alerts")[1], timeout=15, message="an alert open"
        )
        assert call(port, "/alerts")[1] == firing
        assert call(port, "/silences")[1] == call(port, "/api/v1/silences")[1] == []

        wrong = call(port, "/api/v1/alerts/sw-05/overtemp/ack", {})
        assert wrong == (404, {"error": "no open alert overtemp for sw-05; open: battery_critical"})
        assert call(port, "/api/v1/alerts/sw-05/battery_critical/ack", {})[0] == 202
        status, silence = call(
            port, "/api/v1/silences", {"device": "sw-05", "hours": 2, "reason": "in repair"}
        )
        assert status == 201
        audit = wait_until(
            lambda: (
                [
                    (p["action"], p["user"], p["target"])
                    for p in influx.rows("SELECT * FROM audit", tmp_db)
                ]
                == [("acknowledge", USER, "sw-05/battery_critical"), ("silence", USER, "sw-05/*")]
            ),
            timeout=15,
            message="the acknowledgement and the silence audited",
        )
        assert audit
        assert silence["reason"] == "in repair"

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = answer.read().decode()
        # A device-wide silence is "in repair": out of service on the board.
        assert 'fleet_devices{site="allingtown",state="out_of_service"} 1' in text
        assert 'fleet_devices{site="allingtown",state="low"} 0' in text
        assert "fleet_http_events_total" in text
