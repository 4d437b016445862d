# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""Battery health and drain: charging, drain parked and riding, health from the hourly roll-up."""

from __future__ import annotations

from gen.common import (
    DEV,
    KIND,
    ROLLUP,
    SEL,
    SITE,
    Layout,
    dashboard,
    device_variable,
    target,
    thresholds,
)
from gen.model import Dashboard
from gen.panels import bargauge, table, timeseries, unit_override


def build() -> Dashboard:
    lay = Layout()
    sel = f"{SEL} AND {DEV}"
    lay.row("Charging")
    lay.add(
        table(
            "Charge sessions (per hour on the charger)",
            "Approximation: InfluxQL cannot cut sessions, so each row is one device-hour on the "
            "charger: start and end charge, minutes charging and the rate.",
            [
                target(
                    'SELECT first("pct") AS "start_pct", last("pct") AS "end_pct", '
                    'last("pct") - first("pct") AS "gained_pct", '
                    '(last("pct") - first("pct")) / (elapsed(last("pct"), 1m) + 1) AS "rate" '
                    f'FROM "battery" WHERE "charging" = true AND {sel} AND $timeFilter '
                    'GROUP BY time(1h), "device" fill(none)',
                    fmt="table",
                )
            ],
            "percent",
            transformations=[{"id": "merge", "options": {}}],
            overrides=[
                unit_override("Time", "dateTimeAsLocal", "Hour"),
                unit_override("rate", "none", "%/min"),
            ],
            sort_by=[{"displayName": "Hour", "desc": True}],
        ),
        12,
        10,
    )
    lay.add(
        timeseries(
            "Charging rate",
            "How fast each device gains charge while on the charger (% per hour).",
            [
                target(
                    'SELECT derivative(mean("pct"), 1h) AS "rate" FROM "battery" WHERE '
                    f'"charging" = true AND {sel} AND $timeFilter GROUP BY time(15m), "device" '
                    "fill(none)",
                    alias="$tag_device",
                )
            ],
            "none",
            defaults={
                "displayName": "${__field.labels.device}",
                "custom": {
                    "drawStyle": "points",
                    "pointSize": 4,
                    "showPoints": "always",
                    "fillOpacity": 0,
                    "spanNulls": False,
                },
            },
        ),
        12,
        10,
    )
    lay.row("Drain")
    lay.add(
        bargauge(
            "Drain while parked (vampire drain)",
            "Mean charge lost per hour while not charging and drawing under 1 A (parked): the "
            "derivative between consecutive such readings, ignoring jumps over 5 %/h (rides).",
            [
                target(
                    'SELECT -mean("d") AS "drain" FROM (SELECT derivative("pct", 1h) AS "d" FROM '
                    f'"battery" WHERE "charging" = false AND "current_a" > -1 AND {sel} AND '
                    '$timeFilter GROUP BY "device") WHERE "d" <= 0 AND "d" > -5 GROUP BY "device"',
                    alias="$tag_device",
                )
            ],
            "none",
            defaults={
                "unit": "none",
                "decimals": 2,
                "displayName": "${__series.name}",
                "thresholds": thresholds(("green", None), ("orange", 1), ("red", 2)),
            },
        ),
        12,
        10,
    )
    lay.add(
        table(
            "Drain per km while riding (per day)",
            "Charge used (sum of drops while not charging) and km ridden per device and day; "
            "Grafana merges both and divides: % per km.",
            [
                target(
                    'SELECT -sum("d") AS "used_pct" FROM (SELECT difference("pct") AS "d" FROM '
                    f'"battery" WHERE "charging" = false AND {sel} AND $timeFilter '
                    'GROUP BY "device") WHERE "d" < 0 GROUP BY time(1d), "device" fill(none)',
                    "A",
                    "table",
                ),
                target(
                    'SELECT spread("odometer_km") AS "km" FROM "status" WHERE '
                    f'{sel} AND $timeFilter GROUP BY time(1d), "device" fill(none)',
                    "B",
                    "table",
                ),
            ],
            "none",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "calculateField",
                    "options": {
                        "mode": "binary",
                        "alias": "pct_per_km",
                        "replaceFields": False,
                        "binary": {"left": "used_pct", "operator": "/", "right": "km"},
                    },
                },
            ],
            overrides=[
                unit_override("Time", "dateTimeAsLocal", "Day"),
                unit_override("used_pct", "percent", "Used"),
                unit_override("km", "lengthkm", "Ridden"),
                unit_override("pct_per_km", "none", "% per km"),
            ],
        ),
        12,
        10,
    )
    lay.row("Health (hourly roll-up, long range)")
    lay.add(
        timeseries(
            "Health over time",
            "State of health per device, from the hourly roll-up (rp_1h).",
            [
                target(
                    f'SELECT last("health_pct") AS "health" FROM {ROLLUP}."battery" WHERE {sel} '
                    'AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
                    alias="$tag_device",
                )
            ],
            "percent",
            interval="1h",
        ),
        12,
        10,
    )
    lay.add(
        bargauge(
            "Ranked by degradation",
            "100 % minus the last state of health, most degraded first.",
            [
                target(
                    f'SELECT 100 - last("health_pct") AS "degradation" FROM {ROLLUP}."battery" '
                    f'WHERE {sel} AND $timeFilter GROUP BY "device"',
                    fmt="table",
                )
            ],
            "percent",
            values=True,
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "sortBy", "options": {"sort": [{"field": "degradation", "desc": True}]}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            ],
            defaults={
                "min": 0,
                "max": 40,
                "thresholds": thresholds(("green", None), ("orange", 15), ("red", 25)),
            },
        ),
        12,
        10,
    )
    lay.add(
        timeseries(
            "Daily charge range",
            "Lowest, mean and highest charge per day over the fleet (hourly roll-up).",
            [
                target(
                    f'SELECT min("pct_min") AS "min", mean("pct") AS "mean", max("pct_max") AS "max" '
                    f'FROM {ROLLUP}."battery" WHERE {sel} AND $timeFilter GROUP BY time(1d) '
                    "fill(none)"
                )
            ],
            "percent",
            interval="1d",
        ),
        24,
        8,
    )
    return dashboard(
        "fleet-battery",
        "Battery health and drain",
        "Charging, drain while parked and riding, state of health and degradation.",
        lay,
        [SITE, KIND, device_variable(multi=True)],
        "now-7d",
        ["battery"],
    )
