"""The collector's 1.x bootstrap: raw and hourly retention policies, and the continuous queries
that fill the hourly one - proven by letting a real InfluxDB run them.

InfluxDB runs a CQ on its own schedule (every `[continuous_queries] run-interval`, 1 s in the
private server here) and, with RESAMPLE EVERY 1s, recomputes the last hours at every run: the
roll-up appears within seconds of the raw readings instead of at the next hour boundary.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector import rollup
from fleet.daemon.collector.sinks import V1Sink
from tests.harness.influx import InfluxServer
from tests.harness.waiting import wait_until

_names = itertools.count(1)
HOUR_MS = 3_600_000


class FastCqInflux(InfluxServer):
    """A private InfluxDB that looks for due continuous queries every second."""

    def _config(self) -> str:
        return (
            super()
            ._config()
            .replace("[continuous_queries]\n", '[continuous_queries]\n  run-interval = "1s"\n')
        )


@pytest.fixture
def fast_cq_influx(tmp_path: Path) -> Iterator[InfluxServer]:
    server = FastCqInflux(tmp_path / "influxd-cq").start()
    yield server
    server.stop()


def _settings(url: str, **extra: Any) -> InfluxSettings:
    database = extra.pop("database", f"retention_{next(_names)}")
    return InfluxSettings(url=url, database=database, **extra)


def _bootstrap(settings: InfluxSettings) -> None:
    sink = V1Sink(settings)
    try:
        result = sink.bootstrap()
        assert result.ok, result
    finally:
        sink.close()


def _policies(influx: InfluxServer, db: str) -> dict[str, tuple[str, bool]]:
    return {
        r["name"]: (r["duration"], r["default"]) for r in influx.rows("SHOW RETENTION POLICIES", db)
    }


def _cqs(influx: InfluxServer, db: str) -> dict[str, str]:
    result = influx.query("SHOW CONTINUOUS QUERIES")
    return {
        name: query
        for series in result["results"][0].get("series", [])
        if series["name"] == db
        for name, query in series.get("values", [])
    }


def test_bootstrap_creates_both_policies_and_the_continuous_queries(influx: InfluxServer) -> None:
    settings = _settings(influx.url, retention="30d", downsample_retention="730d")
    _bootstrap(settings)
    db = settings.database
    assert _policies(influx, db) == {
        "autogen": ("0s", False),
        "raw": ("720h0m0s", True),
        "rp_1h": ("17520h0m0s", False),
    }
    cqs = _cqs(influx, db)
    assert sorted(cqs) == ["cq_battery_rp_1h", "cq_location_rp_1h", "cq_status_rp_1h"]
    battery = cqs["cq_battery_rp_1h"]
    assert f"ON {db} RESAMPLE EVERY 10m FOR 2h BEGIN" in battery
    assert f"INTO {db}.rp_1h.battery FROM {db}.raw.battery GROUP BY time(1h), * END" in battery
    assert "mean(pct) AS pct" in battery
    assert "last(charging) AS charging" in battery
    assert "last(state) AS state" in cqs["cq_status_rp_1h"]
    influx.drop_database(db)


def test_a_second_bootstrap_keeps_the_cqs_and_a_changed_setting_replaces_them(
    influx: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(influx.url)
    _bootstrap(settings)
    before = _cqs(influx, settings.database)
    with caplog.at_level(logging.INFO, logger="fleet.daemon.collector.sinks"):
        _bootstrap(settings)
        # Not dropped and created again either: the server's echo matched the definition.
        assert "replacing continuous query" not in caplog.text
        assert _cqs(influx, settings.database) == before
        changed = settings.model_copy(
            update={"downsample_every": "5m", "downsample_retention": "INF"}
        )
        _bootstrap(changed)
        assert caplog.text.count("replacing continuous query") == len(before)
    after = _cqs(influx, settings.database)
    assert sorted(after) == sorted(before)
    assert all("RESAMPLE EVERY 5m FOR 2h" in q for q in after.values())
    assert _policies(influx, settings.database)["rp_1h"] == ("0s", False)
    influx.drop_database(settings.database)


def test_an_empty_downsample_policy_creates_no_rollup(influx: InfluxServer) -> None:
    settings = _settings(influx.url, downsample_policy="")
    _bootstrap(settings)
    assert sorted(_policies(influx, settings.database)) == ["autogen", "raw"]
    assert _cqs(influx, settings.database) == {}
    influx.drop_database(settings.database)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("downsample_policy", "raw"),
        ("downsample_retention", "30m"),
        ("downsample_for", "59m"),
        ("downsample_every", "0s"),
        ("downsample_every", "soon"),
    ],
)
def test_bad_rollup_settings_are_refused(key: str, value: str) -> None:
    with pytest.raises(ValidationError, match=key):
        InfluxSettings(**{key: value})


def _raw_readings(now_ms: int) -> list[dict[str, Any]]:
    """Two devices, a reading every 7 minutes over the last 2.5 hours."""
    readings = []
    for device, base in (("sw-01", 90.0), ("hh-02", 60.0)):
        for i in range(22):
            ts = now_ms - i * 7 * 60_000
            readings.append(
                {
                    "device": device,
                    "ts": ts,
                    "pct": base - i * 1.5,
                    "charging": i % 3 == 0,
                    "temp_c": 20.0 + i % 5,
                    "state": ("riding", "idle", "docked")[i % 3],
                    "odometer_km": 1000.0 - i * 0.8,
                    "lat": 41.27 + i / 1000,
                    "speed_kmh": float(i % 4 * 3),
                }
            )
    return readings


def _lines(readings: list[dict[str, Any]]) -> bytes:
    out = []
    for r in readings:
        tags = f"site=allingtown,kind=segway,device={r['device']}"
        charging = "true" if r["charging"] else "false"
        out += [
            f"battery,{tags} pct={r['pct']},temp_c={r['temp_c']},charging={charging} {r['ts']}",
            f"location,{tags} lat={r['lat']},lon=-72.9,speed_kmh={r['speed_kmh']} {r['ts']}",
            f'status,{tags} state="{r["state"]}",odometer_km={r["odometer_km"]} {r["ts"]}',
        ]
    return "\n".join(out).encode()


def _expected(readings: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The hourly roll-up computed here, independently of InfluxDB."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in readings:
        groups.setdefault((r["device"], r["ts"] // HOUR_MS * HOUR_MS), []).append(r)
    expected = {}
    for key, rows in groups.items():
        rows.sort(key=lambda r: r["ts"])
        pct = [r["pct"] for r in rows]
        odo = [r["odometer_km"] for r in rows]
        expected[key] = {
            "pct": sum(pct) / len(pct),
            "pct_min": min(pct),
            "pct_max": max(pct),
            "pct_first": pct[0],
            "pct_last": pct[-1],
            "temp_c_max": max(r["temp_c"] for r in rows),
            "charging": rows[-1]["charging"],
            "samples": len(rows),
            "state": rows[-1]["state"],
            "odometer_km": odo[-1],
            "distance_km": max(odo) - min(odo),
            "lat": rows[-1]["lat"],
            "speed_kmh_max": max(r["speed_kmh"] for r in rows),
        }
    return expected


def _rollup(influx: InfluxServer, db: str) -> dict[tuple[str, int], dict[str, Any]]:
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for measurement in rollup.measurements():
        for row in influx.rows(f'SELECT * FROM "rp_1h"."{measurement}" GROUP BY *', db):
            merged.setdefault((row["device"], row["time"]), {}).update(row)
    return merged


def test_the_server_runs_the_cqs_and_fills_the_hourly_policy(
    fast_cq_influx: InfluxServer,
) -> None:
    settings = _settings(
        fast_cq_influx.url, downsample_every="1s", downsample_for="4h", database="fleet"
    )
    _bootstrap(settings)
    now_ms = int(time.time() * 1000)
    readings = _raw_readings(now_ms)
    sink = V1Sink(settings)
    try:
        assert sink.write(_lines(readings)).ok
    finally:
        sink.close()
    expected = _expected(readings)

    def filled() -> dict[tuple[str, int], dict[str, Any]] | None:
        # One CQ per measurement, each run on the server's own schedule: wait until every
        # measurement's roll-up of every hour is there and has seen every sample.
        got = _rollup(fast_cq_influx, "fleet")
        complete = set(got) == set(expected) and all(
            set(v) <= set(got[k]) and got[k].get("samples") == v["samples"]
            for k, v in expected.items()
        )
        return got if complete else None

    got = wait_until(filled, timeout=30, message="the CQs filled rp_1h")
    assert got is not None
    for key, values in expected.items():
        row = got[key]
        for name, value in values.items():
            assert row[name] == pytest.approx(value), (key, name)
        # Tags stay tags ("GROUP BY time(1h), *"): site and kind came through as well.
        assert (row["site"], row["kind"]) == ("allingtown", "segway")
    tag_keys = {
        r["tagKey"] for r in fast_cq_influx.rows('SHOW TAG KEYS FROM "rp_1h"."battery"', "fleet")
    }
    assert tag_keys == {"site", "kind", "device"}


def test_the_rollup_fields_exist_in_the_raw_schema() -> None:
    """Every field a CQ aggregates is one the collector writes (README "InfluxDB schema")."""
    from fleet.daemon.collector import schema

    written = {m: set(fields) for m, fields in schema.GROUP_FIELDS.items()}
    for measurement in rollup.measurements():
        assert set(rollup.rollup_fields(measurement).values()) <= written[measurement]
