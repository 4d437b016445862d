"""The roll-up of issue 13's fields (`status.speed_kmh`, `battery.cell_spread_v`,
`battery.pack_ids`) on a real InfluxDB 1.6 with the real collector and Mosquitto, as an
upgrade meets it:

- the database holds the OLD continuous queries (the definitions before these fields, written
  out literally below, created by hand); the collector starts -> they are replaced by the new
  ones, the unchanged one is left alone;
- readings in the raw policy -> the CQs' roll-up carries the new fields, aggregated as
  rollup.py says; late readings -> the collector's backfill of their hours carries them too;
- a device without the fields (a handheld; a Ninebot with a speedometer but no packs; a PT
  hour whose packs were not read) rolls up exactly as the old CQs rolled it up: the old
  statements are run over the same raw data into a policy of their own and compared.

One collector run feeds every test here (module scope: ~3 s on a quiet machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fleet.daemon.collector import rollup
from fleet.daemon.mqtt import MqttLink
from tests.daemon.collector.late_day import with_influx
from tests.daemon.collector.test_retention import FastCqInflux  # CQs looked for every 1 s
from tests.harness.fleet import publisher, running_collector, settings_from, telemetry, write_config
from tests.harness.influx import InfluxServer
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

H = rollup.HOUR_MS
MIN = 60_000
DB = "fleet_rollup_fields"
EVERY, FOR = "1s", "4h"  # the CQs recompute the last 4 h every second
NEW_FIELDS = {
    "battery": {"cell_spread_v", "cell_spread_v_max", "pack_ids", "pack_ids_first"},
    "location": set(),
    "status": {"speed_kmh", "speed_kmh_max"},
}
# The roll-up before issue 13's fields, as rollup.py defined it then: the SELECT of each CQ.
OLD_COLUMNS = {
    "battery": (
        "mean(pct) AS pct, min(pct) AS pct_min, max(pct) AS pct_max, first(pct) AS pct_first, "
        "last(pct) AS pct_last, mean(voltage_v) AS voltage_v, mean(current_a) AS current_a, "
        "mean(temp_c) AS temp_c, max(temp_c) AS temp_c_max, last(health_pct) AS health_pct, "
        "last(charging) AS charging, count(pct) AS samples"
    ),
    "location": (
        "last(lat) AS lat, last(lon) AS lon, mean(speed_kmh) AS speed_kmh, "
        "max(speed_kmh) AS speed_kmh_max, count(lat) AS samples"
    ),
    "status": (
        "last(state) AS state, last(odometer_km) AS odometer_km, "
        "spread(odometer_km) AS distance_km, last(range_km) AS range_km, "
        "max(error_code) AS error_code, mean(rssi_dbm) AS rssi_dbm, last(locked) AS locked, "
        "last(firmware) AS firmware, count(state) AS samples"
    ),
}
PACKS_BEFORE = "C01061400098,C01061400117"
PACKS_AFTER = "C01061400098,C01061400342"  # pack B swapped in the middle of one hour


def _old_select(measurement: str, policy: str, where: str = "") -> str:
    where = f" WHERE {where}" if where else ""
    return (
        f"SELECT {OLD_COLUMNS[measurement]} INTO {DB}.{policy}.{measurement} "
        f"FROM {DB}.raw.{measurement}{where} GROUP BY time(1h), *"
    )


def _old_cq(measurement: str) -> str:
    return (
        f"CREATE CONTINUOUS QUERY cq_{measurement}_rp_1h ON {DB} RESAMPLE EVERY {EVERY} "
        f"FOR {FOR} BEGIN {_old_select(measurement, 'rp_1h')} END"
    )


@dataclass(frozen=True)
class Reading:
    device: str
    kind: str
    seq: int
    ts_ms: int
    groups: dict[str, dict[str, Any]]


def _readings(now_ms: int) -> tuple[list[Reading], set[int]]:
    """Three devices, a reading every 5 min, late (29 h to 26 h ago: past FOR, only the
    backfill reaches them) and live (the last 2.5 h: the CQs'); and the late hours.

    pt-01, a PT: packs, spread and speedometer; late, every 4th reading without its packs
    read, one hour without them at all, and pack B swapped in the middle of another hour.
    sw-01, a Ninebot: a speedometer, no packs. hh-01, a handheld: none of the new fields.
    """
    late_start = now_ms - 29 * H
    late_start -= late_start % H - 2 * MIN  # 2 min into an hour: whole hours of readings
    windows = [(late_start, late_start + 3 * H), (now_ms - 150 * MIN, now_ms - MIN)]
    # packs swapped in the second late hour, none read in the third (after packs were seen)
    no_packs_hour, swap_at = late_start - 2 * MIN + 2 * H, late_start - 2 * MIN + H + 31 * MIN
    readings: list[Reading] = []
    for device, kind in (("pt-01", "segway"), ("sw-01", "segway"), ("hh-01", "handheld")):
        seq = 0
        for start, end in windows:
            for ts in range(start, end, 5 * MIN):
                seq += 1
                battery: dict[str, Any] = {
                    "pct": round(90 - seq * 0.7, 1),
                    "charging": seq % 7 == 0,
                    "temp_c": 20.0 + seq % 6,
                }
                status: dict[str, Any] = {"state": "riding", "odometer_km": 500 + seq / 4}
                location = {"lat": 41.27 + seq / 10_000, "lon": -72.95, "speed_kmh": seq % 9 * 1.5}
                if device != "hh-01":
                    status["speed_kmh"] = float((seq * 7) % 23) - 2  # a reverse now and then
                packs_read = start != late_start or (
                    seq % 4 != 0 and rollup.hour_of(ts) != no_packs_hour
                )
                if device == "pt-01" and packs_read:
                    battery["cell_spread_v"] = round(0.02 + (seq * 13) % 17 / 1000, 3)
                    battery["pack_ids"] = PACKS_BEFORE if ts < swap_at else PACKS_AFTER
                groups = {"battery": battery, "location": location, "status": status}
                readings.append(Reading(device, kind, seq, ts, groups))
    late_hours = {rollup.hour_of(ts) for ts in range(*windows[0], 5 * MIN)}
    return readings, late_hours


def _expected_new(readings: list[Reading]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(measurement, device, hour) -> the new fields' roll-up, computed here from the readings."""
    values: dict[tuple[str, str, int], dict[str, list[Any]]] = {}
    for r in sorted(readings, key=lambda r: r.ts_ms):
        hour = rollup.hour_of(r.ts_ms)
        for measurement, raw in (
            ("battery", "cell_spread_v"),
            ("battery", "pack_ids"),
            ("status", "speed_kmh"),
        ):
            got = values.setdefault((measurement, r.device, hour), {})
            if raw in r.groups[measurement]:
                got.setdefault(raw, []).append(r.groups[measurement][raw])
    expected: dict[tuple[str, str, int], dict[str, Any]] = {}
    for key, fields in values.items():
        row: dict[str, Any] = {}
        if spread := fields.get("cell_spread_v"):
            row |= {"cell_spread_v": sum(spread) / len(spread), "cell_spread_v_max": max(spread)}
        if packs := fields.get("pack_ids"):
            row |= {"pack_ids": packs[-1], "pack_ids_first": packs[0]}
        if speed := fields.get("speed_kmh"):
            row |= {"speed_kmh": sum(speed) / len(speed), "speed_kmh_max": max(speed)}
        expected[key] = row
    return expected


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Upgraded:
    influx: InfluxServer
    readings: list[Reading]
    late_hours: set[int]
    cqs_before: dict[str, str]
    log: list[str]
    backfilled_hours: int


def _cqs(influx: InfluxServer) -> dict[str, str]:
    result = influx.query("SHOW CONTINUOUS QUERIES")
    return {
        name: query
        for series in result["results"][0].get("series", [])
        if series["name"] == DB
        for name, query in series.get("values", [])
    }


def _rows(influx: InfluxServer, policy: str, measurement: str) -> dict[tuple[str, int], Any]:
    """(device, hour) -> the roll-up point's fields that have a value."""
    rows = influx.rows(f'SELECT * FROM "{policy}"."{measurement}" GROUP BY *', DB)
    return {
        (r["device"], r["time"]): {
            k: v for k, v in r.items() if v is not None and k not in ("time", "site", "kind")
        }
        | {"_tags": (r["site"], r["kind"])}
        for r in rows
    }


def _publish(link: MqttLink, readings: list[Reading]) -> None:
    for r in readings:
        topic = f"fleet/v1/allingtown/{r.kind}/{r.device}/telemetry"
        g = r.groups
        payload = telemetry(
            r.device,
            r.seq,
            r.ts_ms,
            battery=g["battery"],
            location=g["location"],
            status=g["status"],
        )
        link.publish(topic, payload, qos=1)


def _complete(influx: InfluxServer, readings: list[Reading]) -> bool:
    """Every (device, hour) of every measurement in rp_1h, having seen all its readings."""
    counts: dict[tuple[str, int], int] = {}
    for r in readings:
        key = (r.device, rollup.hour_of(r.ts_ms))
        counts[key] = counts.get(key, 0) + 1
    return all(
        {k: v.get("samples") for k, v in _rows(influx, "rp_1h", m).items()} == counts
        for m in rollup.measurements()
    )


@pytest.fixture(scope="module")
def upgraded(
    mqtt_broker: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upgraded]:
    tmp = tmp_path_factory.mktemp("rollup-fields")
    influx = FastCqInflux(tmp / "influxd").start()
    try:
        # An install from before these fields: its policies and its CQs, as it left them.
        influx.post_query(f"CREATE DATABASE {DB}")
        influx.post_query(f"CREATE RETENTION POLICY raw ON {DB} DURATION 30d REPLICATION 1 DEFAULT")
        influx.post_query(f"CREATE RETENTION POLICY rp_1h ON {DB} DURATION 730d REPLICATION 1")
        for measurement in rollup.measurements():
            influx.post_query(_old_cq(measurement))
        cqs_before = _cqs(influx)

        config = write_config(tmp, broker=mqtt_broker, influx=influx, database=DB)
        settings = with_influx(
            settings_from(config),
            downsample_every=EVERY,
            downsample_for=FOR,
            backfill_settle_s=0.0,
            backfill_hours_per_minute=600,
        )
        readings, late_hours = _readings(int(time.time() * 1000))
        records = _Records()
        sinks_log = logging.getLogger("fleet.daemon.collector.sinks")
        sinks_log.addHandler(records)
        level = sinks_log.level
        sinks_log.setLevel(logging.INFO)  # the in-process collector leaves the root at WARNING
        try:
            with running_collector(settings, mqtt_broker) as collector:
                with publisher(settings, "rollup-fields") as link:
                    _publish(link, readings)
                backfill = collector.backfill
                assert backfill is not None
                wait_until(
                    lambda: (
                        collector.ingest.counters.accepted >= len(readings)
                        and collector.spool.depth().rows == 0
                        and backfill.counters.backfilled_hours >= len(late_hours)
                        and not len(backfill.pending)
                    ),
                    timeout=90,
                    interval=0.2,
                    message="the collector wrote every reading and recomputed the late hours",
                )
                assert collector.ingest.counters.accepted == len(readings)
                backfilled = backfill.counters.backfilled_hours
        finally:
            sinks_log.removeHandler(records)
            sinks_log.setLevel(level)
        # The live hours are the CQs' work, on InfluxDB's own schedule.
        wait_until(
            lambda: _complete(influx, readings),
            timeout=60,
            interval=0.5,
            message="rp_1h holds every hour of every device, each with all its readings",
        )
        # What the old CQs make of the same raw data, for the "as before" comparison.
        influx.post_query(f"CREATE RETENTION POLICY rp_old ON {DB} DURATION 730d REPLICATION 1")
        span = f"time >= {min(r.ts_ms for r in readings) - H}ms AND time < now()"
        for measurement in rollup.measurements():
            influx.post_query(_old_select(measurement, "rp_old", span), DB)
        yield Upgraded(influx, readings, late_hours, cqs_before, records.messages, backfilled)
    finally:
        influx.stop()


def test_the_old_cqs_are_what_an_install_before_these_fields_had(upgraded: Upgraded) -> None:
    """The server echoes the hand-made CQs as written: the collector met an old install's
    definitions, none of the new fields in them."""
    assert upgraded.cqs_before == {
        rollup.cq_name(m, "rp_1h"): _old_cq(m) for m in ("battery", "location", "status")
    }
    assert not any("pack_ids" in q for q in upgraded.cqs_before.values())


def test_the_collectors_start_replaces_the_old_cqs_with_the_new_fields(
    upgraded: Upgraded,
) -> None:
    wanted = {
        cq.name: cq.statement.replace('"', "")
        for cq in rollup.continuous_queries(DB, "raw", "rp_1h", EVERY, FOR)
    }
    assert _cqs(upgraded.influx) == wanted
    battery = wanted["cq_battery_rp_1h"]
    assert "last(pack_ids) AS pack_ids, first(pack_ids) AS pack_ids_first" in battery
    assert "max(cell_spread_v) AS cell_spread_v_max" in battery
    assert "mean(speed_kmh) AS speed_kmh" in wanted["cq_status_rp_1h"]
    # Only the changed ones were replaced: location's definition is as it was.
    replaced = [m for m in upgraded.log if m.startswith("replacing continuous query")]
    assert sorted(replaced) == [
        f"replacing continuous query {rollup.cq_name(m, 'rp_1h')} (its definition changed)"
        for m in ("battery", "status")
    ]


def _check_new_fields(upgraded: Upgraded, hours: set[int]) -> int:
    """The new fields of these hours in rp_1h are the ones computed from the readings; the
    number of (measurement, device, hour) checked that carry at least one."""
    expected = _expected_new(upgraded.readings)
    rows = {m: _rows(upgraded.influx, "rp_1h", m) for m in ("battery", "status")}
    carried = 0
    for (measurement, device, hour), want in expected.items():
        if hour not in hours:
            continue
        row = rows[measurement][(device, hour)]
        got = {k: v for k, v in row.items() if k in NEW_FIELDS[measurement]}
        assert got.keys() == want.keys(), (measurement, device, hour)
        for name, value in want.items():
            assert got[name] == (value if isinstance(value, str) else pytest.approx(value)), (
                measurement,
                device,
                hour,
                name,
            )
        carried += bool(want)
    return carried


def test_the_cqs_roll_up_the_new_fields_of_live_readings(upgraded: Upgraded) -> None:
    live = {rollup.hour_of(r.ts_ms) for r in upgraded.readings} - upgraded.late_hours
    # pt-01's battery and status, sw-01's status, in each live hour
    assert _check_new_fields(upgraded, live) == 3 * len(live)


def test_the_backfill_of_late_hours_carries_the_new_fields(upgraded: Upgraded) -> None:
    assert upgraded.backfilled_hours >= len(upgraded.late_hours)
    # pt-01's status and sw-01's status in each late hour, pt-01's battery in all but the
    # hour its packs were not read.
    assert _check_new_fields(upgraded, upgraded.late_hours) == 3 * len(upgraded.late_hours) - 1
    battery = _rows(upgraded.influx, "rp_1h", "battery")
    swapped = [
        row
        for (device, _), row in battery.items()
        if device == "pt-01" and row.get("pack_ids_first") != row.get("pack_ids")
    ]
    assert [(r["pack_ids_first"], r["pack_ids"]) for r in swapped] == [(PACKS_BEFORE, PACKS_AFTER)]


def test_readings_without_the_fields_roll_up_exactly_as_before(upgraded: Upgraded) -> None:
    """Every roll-up point, live and backfilled, minus the new fields is the old CQs' point;
    a point of a device or hour without them has nothing else (no empty string, no zero)."""
    expected = _expected_new(upgraded.readings)
    without = 0
    for measurement in rollup.measurements():
        new = _rows(upgraded.influx, "rp_1h", measurement)
        old = _rows(upgraded.influx, "rp_old", measurement)
        assert new.keys() == old.keys(), measurement
        assert len(new) >= 3 * len(upgraded.late_hours), measurement
        for (device, hour), row in new.items():
            kept = {k: v for k, v in row.items() if k not in NEW_FIELDS[measurement]}
            assert kept == old[(device, hour)], (measurement, device, hour)
            if not expected.get((measurement, device, hour)):
                without += 1
                assert row == old[(device, hour)], (measurement, device, hour)
    # Per hour: hh-01's three points, sw-01's battery and location, pt-01's location (no new
    # field there); and pt-01's battery in its hour without packs.
    hours = {rollup.hour_of(r.ts_ms) for r in upgraded.readings}
    assert without == (3 + 1 + 2) * len(hours) + 1


def test_the_readings_hold_what_the_checks_rely_on(upgraded: Upgraded) -> None:
    """Else the checks above could pass vacuously: only pt-01 has packs, it has a late hour
    without them, and the late hours are past the CQs' reach (only the backfill fills them)."""
    devices = {r.device for r in upgraded.readings if "pack_ids" in r.groups["battery"]}
    assert devices == {"pt-01"}
    pt_late = {
        rollup.hour_of(r.ts_ms)
        for r in upgraded.readings
        if r.device == "pt-01" and "pack_ids" in r.groups["battery"]
    }
    assert len(upgraded.late_hours - pt_late) == 1
    last_cq_run = rollup.last_cq_run_ms(max(upgraded.late_hours), 1000, 4 * H)
    assert last_cq_run < max(r.ts_ms for r in upgraded.readings) - 20 * H
