"""Two collectors on one broker and one InfluxDB, each owning one site (issue 12, item 4).

Real Mosquitto, real InfluxDB, two whole in-process collectors with their own client id,
spool, alert state and HTTP port. Both sites publish seq-numbered readings, registered and
unregistered OwnTracks phones report on the one `owntracks/+/+` filter both collectors
share, and one device of each site runs flat:

- every reading is stored exactly once: each device's seq numbers are all in InfluxDB, and
  the two collectors together accepted each message once (InfluxDB would merge a reading
  written twice into one point, so the collectors' own counts are what shows a double);
- each site's alert fires once, from its own collector: one retained alert message, one
  `alert` point;
- each `/healthz` names its own site only, each board (the API, and `fleet status` on it)
  lists only its own site's devices.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.daemon.collector.app import Collector
from fleet.daemon.status_command import fetch_devices, write_board
from tests.harness.fleet import (
    Listener,
    publisher,
    running_collector,
    settings_from,
    telemetry,
    write_config,
)
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

SITES = ("allingtown", "downtown")  # allingtown is site.id in both files
N = 150  # seq-numbered readings per telemetry device
PHONE_FIXES = 5  # OwnTracks locations per phone

REGISTRY = """
[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"
site = "downtown"

[[devices]]
id = "hh-01"
kind = "handheld"
owntracks = "diaz/phone"

[[devices]]
id = "hh-02"
kind = "handheld"
site = "downtown"
owntracks = "reyes/phone"
"""
# Telemetry devices per site: one registered, one the registry does not know.
TELEMETRY = {"allingtown": ("sw-01", "sw-11"), "downtown": ("sw-02", "sw-12")}
# OwnTracks pair -> (device, the site it is stored under).
PHONES = {
    "diaz/phone": ("hh-01", "allingtown"),
    "reyes/phone": ("hh-02", "downtown"),
    "nobody/hh-77": ("hh-77", "allingtown"),  # unregistered: site.id's collector keeps it
}
FLAT = {"allingtown": "sw-01", "downtown": "sw-02"}  # the device of each site that runs flat


@pytest.fixture
def mqtt_broker(make_broker: Callable[..., MosquittoServer]) -> MosquittoServer:
    """Its own broker: the retained alerts these tests leave must not reach others."""
    return make_broker()


def collector_settings(
    tmp_path: Path, site: str, broker: MosquittoServer, influx: InfluxServer, db: str
) -> FleetSettings:
    """Its own folder (spool, dead letters, session key, alert state, sign-out sheet), its
    own client id and HTTP port; the same registry and InfluxDB database as the other."""
    folder = tmp_path / site
    folder.mkdir()
    path = write_config(
        folder,
        broker=broker,
        influx=influx,
        database=db,
        client_id=f"collector-{site}",
        extra=REGISTRY,
        # No shifts, so no escalation: with the default shifts (07:00, 15:00, 23:00 New York)
        # a critical alert that fires within 30 min before one escalates on the next tick, a
        # second event of the same alert (same `since`): this test would then fail by the
        # time of day. Escalation has its own tests (test_alert_scenarios.py).
        alerts="shifts = []",
    )
    text = path.read_text(encoding="utf-8")
    assert "[collector]\n" in text
    path.write_text(text.replace("[collector]\n", f'[collector]\nsites = ["{site}"]\n'))
    return settings_from(path)


def location(ts_s: int, batt: int) -> bytes:
    return json.dumps(
        {"_type": "location", "batt": batt, "lat": 41.27, "lon": -72.95, "tst": ts_s}
    ).encode()


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def test_two_collectors_each_own_a_site_and_store_and_alert_everything_once(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str
) -> None:
    settings = {s: collector_settings(tmp_path, s, mqtt_broker, influx, tmp_db) for s in SITES}
    alerts = Listener(settings["allingtown"], mqtt_broker, "fleet/v1/+/alerts/#")
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - (N + 10) * 1000
    with ExitStack() as stack:
        stack.callback(alerts.close)
        running: dict[str, Collector] = {
            s: stack.enter_context(running_collector(settings[s], mqtt_broker)) for s in SITES
        }
        with publisher(settings["allingtown"]) as pub:
            for seq in range(1, N + 1):
                for site, devices in TELEMETRY.items():
                    for device in devices:
                        topic = f"fleet/v1/{site}/segway/{device}/telemetry"
                        ts = start_ms + seq * 1000
                        pub.publish(topic, telemetry(device, seq, ts, pct=80), qos=1)
            for n in range(PHONE_FIXES):
                for pair in PHONES:
                    pub.publish(f"owntracks/{pair}", location(now_ms // 1000 - 60 + n, 70), qos=1)
            for site, device in FLAT.items():  # the newest reading of each: flat
                topic = f"fleet/v1/{site}/segway/{device}/telemetry"
                pub.publish(topic, telemetry(device, N + 1, now_ms, pct=4), qos=1)

        # Each collector hears its own site's telemetry and every OwnTracks message.
        phones = PHONE_FIXES * len(PHONES)
        heard = {s: 2 * N + 1 + phones for s in SITES}

        def settled() -> bool:
            return all(
                c.ingest.counters.received == heard[s]
                and c.spool.depth().rows == 0
                and c.alerts is not None
                and c.alerts.counters.events >= 1
                for s, c in running.items()
            )

        wait_until(settled, timeout=60, interval=0.2, message="both collectors wrote it all")

        # Stored once: every message accepted by exactly one collector, the rest "not ours".
        own_phones = {s: PHONE_FIXES * sum(p[1] == s for p in PHONES.values()) for s in SITES}
        for site, c in running.items():
            counters = c.ingest.counters
            assert counters.accepted == 2 * N + 1 + own_phones[site], site
            assert counters.not_ours == phones - own_phones[site], site
            assert (counters.dead_lettered, sum(counters.rejected.values())) == (0, 0), site
        assert sum(c.ingest.counters.accepted for c in running.values()) == 4 * N + 2 + phones

        # ... and all of it in InfluxDB, under the right site.
        seqs: dict[tuple[str, str], list[int]] = {}
        for series in influx.query(
            'SELECT "seq" FROM "battery" WHERE "seq" >= 0 GROUP BY "site", "device"', tmp_db
        )["results"][0]["series"]:
            key = (series["tags"]["site"], series["tags"]["device"])
            seqs[key] = sorted(v[1] for v in series["values"])
        expected = {(s, d): list(range(1, N + 1)) for s, ds in TELEMETRY.items() for d in ds}
        for site, device in FLAT.items():
            expected[(site, device)].append(N + 1)
        assert seqs == expected
        fixes = influx.query(
            'SELECT count("lat") FROM "location" GROUP BY "site", "device"', tmp_db
        )["results"][0]["series"]
        stored = {(s["tags"]["site"], s["tags"]["device"]): s["values"][0][1] for s in fixes}
        assert stored == {(site, device): PHONE_FIXES for device, site in PHONES.values()}

        # Each site's alert fired once, by its own collector.
        for site, c in running.items():
            assert c.alerts is not None
            firing = [(a.device, str(a.rule)) for a in c.alerts.engine.alerts(firing_only=True)]
            assert firing == [(FLAT[site], "battery_critical")], site
            assert c.alerts.counters.events == 1, site
        published = Counter(
            (m.topic, json.loads(m.payload)["state"]) for m in alerts.messages if not m.retain
        )
        assert published == Counter(
            {
                (f"fleet/v1/{site}/alerts/{device}/battery_critical", "firing"): 1
                for site, device in FLAT.items()
            }
        )

        def alert_points() -> list[dict[str, Any]]:
            q = 'SELECT count("state") FROM "alert" GROUP BY "site", "device", "rule"'
            found: list[dict[str, Any]] = influx.query(q, tmp_db)["results"][0].get("series", [])
            return found if len(found) >= len(FLAT) else []

        points = wait_until(alert_points, timeout=20, message="both alert points in InfluxDB")
        assert {
            (p["tags"]["site"], p["tags"]["device"], p["tags"]["rule"]): p["values"][0][1]
            for p in points
        } == {(site, device, "battery_critical"): 1 for site, device in FLAT.items()}

        # Each /healthz, board and `fleet status` is about its own site only.
        for site, c in running.items():
            port = c.web.http.port
            assert get(port, "/healthz")["sites"] == [site]
            assert [s["site"] for s in get(port, "/api/v1/sites")] == [site]
            board = fetch_devices(f"http://127.0.0.1:{port}")
            mine = set(TELEMETRY[site]) | {d for d, s in PHONES.values() if s == site}
            assert {d["device"] for d in board} == mine, site
            assert {d["site"] for d in board} == {site}
            out = io.StringIO()
            write_board(out, board, colour=False)
            other = next(s for s in SITES if s != site)
            assert site in out.getvalue()
            assert other not in out.getvalue()
