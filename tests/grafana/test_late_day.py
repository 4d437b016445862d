"""A day of readings delivered late reaches every hourly roll-up panel, with nobody's help.

The readings are 26-50 h old when they are published (an agent's outbox, a bridge's
backlog): the continuous queries, which look back `downsample_for` (2 h), never see them.
The real collector writes them, notices that they are late and recomputes their hours with
the CQs' own SELECT ... INTO (daemon/collector/backfill.py). Then every panel query of the
dashboards that reads the roll-up is rendered as Grafana renders it - the dashboard's own
$site/$kind/$device variables from their own queries, a time range covering that day - and
must return that day: each device's hourly health, its degradation, each day's charge range.
The test itself never writes into the roll-up or runs a query into it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.daemon.collector.metrics import collector_metrics
from tests.daemon.collector.late_day import H, LateDay, late_day, publish, with_influx
from tests.grafana.dashboards import DASHBOARDS, Json, load, targets, variables
from tests.grafana.render import Variable, render
from tests.harness.fleet import publisher, running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

ROLLUP = '"rp_1h".'
DAY_MS = 86_400_000
CHECKED = {"Health over time", "Ranked by degradation", "Daily charge range"}


def _rollup_targets() -> list[tuple[str, Json, Json, Json]]:
    found = []
    for path in DASHBOARDS:
        dashboard = load(path)
        for panel, target in targets(dashboard):
            if ROLLUP in target["query"]:
                found.append((path.stem, dashboard, panel, target))
    return found


def _choose_all(
    dashboard: Json, influx: InfluxServer, db: str, from_ms: int, to_ms: int
) -> dict[str, Variable]:
    """Every variable set to All, its options from its own query (chained as in Grafana)."""
    chosen: dict[str, Variable] = {}
    for var in variables(dashboard):
        query = render(var["query"], from_ms=from_ms, to_ms=to_ms, variables=chosen)
        options = [r["value"] for r in influx.rows(query, db)]
        assert options, f"variable {var['name']}: {query!r} offers nothing"
        chosen[var["name"]] = Variable(
            var["name"], ["$__all"], options, var["multi"], var["includeAll"], var["allValue"]
        )
    return chosen


def _series(influx: InfluxServer, db: str, query: str) -> list[dict[str, Any]]:
    result = influx.query(query, db)
    return [s for r in result["results"] for s in r.get("series", [])]


def _rows(series: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]


def _check_health_over_time(day: LateDay, found: list[dict[str, Any]]) -> None:
    expected: dict[str, dict[int, float]] = {}
    for (device, hour), readings in day.per_device_hour().items():
        expected.setdefault(device, {})[hour] = readings[-1].health_pct
    got = {s["tags"]["device"]: {row["time"]: row["health"] for row in _rows(s)} for s in found}
    assert got == expected


def _check_ranked(day: LateDay, found: list[dict[str, Any]]) -> None:
    last = {r.device: r for r in sorted(day.readings, key=lambda r: r.ts_ms)}
    got = {s["tags"]["device"]: _rows(s)[0]["degradation"] for s in found}
    assert got.keys() == last.keys()
    for device, reading in last.items():
        assert abs(got[device] - (100 - reading.health_pct)) < 1e-9, device


def _check_daily_range(day: LateDay, found: list[dict[str, Any]]) -> None:
    by_day: dict[int, list[list[float]]] = {}
    for (_, hour), readings in day.per_device_hour().items():
        by_day.setdefault(hour - hour % DAY_MS, []).append([r.pct for r in readings])
    (series,) = found
    got = {row["time"] - row["time"] % DAY_MS: row for row in _rows(series)}
    assert got.keys() == by_day.keys()
    for start, hours in by_day.items():
        row = got[start]
        assert row["min"] == min(min(h) for h in hours)
        assert row["max"] == max(max(h) for h in hours)
        assert abs(row["mean"] - statistics.mean(statistics.mean(h) for h in hours)) < 1e-6


CHECKS: dict[str, Callable[[LateDay, list[dict[str, Any]]], None]] = {
    "Health over time": _check_health_over_time,
    "Ranked by degradation": _check_ranked,
    "Daily charge range": _check_daily_range,
}


def test_the_dashboards_roll_up_panels_read_through_the_hourly_roll_up() -> None:
    titles = {panel["title"] for _, _, panel, _ in _rollup_targets()}
    # A new roll-up panel is still run below (it must return the day); this names the ones
    # whose numbers are checked too.
    assert titles >= CHECKED, titles


def test_a_late_day_reaches_every_rollup_panel(
    tmp_path: Path,
    influx: InfluxServer,
    tmp_db: str,
    make_broker: Callable[..., MosquittoServer],
) -> None:
    broker = make_broker()
    settings = settings_from(write_config(tmp_path, broker=broker, influx=influx, database=tmp_db))
    settings = with_influx(settings, backfill_settle_s=0.0, backfill_hours_per_minute=600)
    day = late_day(int(time.time() * 1000))
    from_ms, to_ms = day.start_ms - day.start_ms % H, day.end_ms

    with running_collector(settings, broker) as collector:
        backfill = collector.backfill
        assert backfill is not None
        with publisher(settings, "late-day") as link:
            publish(link, day)
        wait_until(
            lambda: (
                collector.ingest.counters.accepted >= len(day.readings)
                and collector.spool.depth().rows == 0
                and backfill.counters.backfilled_hours >= len(day.hours)
                and not len(backfill.pending)
            ),
            timeout=90,
            interval=0.2,
            message="the collector wrote the late day and recomputed its hours",
        )
        fields = backfill.fields()
        assert fields["rollup_late_points"] == day.points
        assert fields["rollup_late_hours"] == 0
        assert fields["rollup_backfill_failures"] == 0
        metrics = {m.name: m.samples[0][1] for m in collector_metrics(collector)}
        assert metrics["fleet_rollup_late_points_total"] == day.points
        assert metrics["fleet_rollup_backfilled_hours_total"] >= len(day.hours)
        assert metrics["fleet_rollup_late_hours"] == 0

    for stem, dashboard, panel, target in _rollup_targets():
        chosen = _choose_all(dashboard, influx, tmp_db, from_ms, to_ms)
        query = render(
            target["query"],
            from_ms=from_ms,
            to_ms=to_ms,
            variables=chosen,
            min_interval=panel.get("interval", "10s"),
        )
        found = _series(influx, tmp_db, query)
        where = f"{stem}: {panel['title']}: {query}"
        assert found, f"no data from {where}"
        assert all(s["values"] for s in found), where
        for s in found:
            assert all(from_ms - DAY_MS < row[0] <= to_ms for row in s["values"]), where
        check = CHECKS.get(panel["title"])
        if check is not None:
            check(day, found)
