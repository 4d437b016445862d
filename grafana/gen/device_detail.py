# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""Device detail: one device's battery, state, track, odometer, faults and alerts."""

from __future__ import annotations

from gen.common import (
    CHARGE,
    DEV,
    KIND,
    SITE,
    Layout,
    dashboard,
    device_variable,
    series,
    target,
    thresholds,
)
from gen.model import Dashboard
from gen.panels import (
    by_name,
    coords_layer,
    geomap,
    stat,
    state_mappings,
    state_timeline,
    table,
    timeseries,
    unit_override,
)


def _last(expr: str, measurement: str) -> str:
    return f'SELECT {expr} FROM "{measurement}" WHERE {DEV} AND $timeFilter'


def build() -> Dashboard:
    lay = Layout()
    lay.row("Now")
    lay.add(
        stat(
            "Charge",
            "Last reported charge.",
            _last('last("pct")', "battery"),
            "percent",
            color_mode="background",
            graph_mode="area",
            defaults={"thresholds": CHARGE, "min": 0, "max": 100},
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "State",
            "Last reported state.",
            _last('last("state")', "status"),
            "none",
            color_mode="background",
            defaults={"mappings": state_mappings()},
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Voltage",
            "Last pack voltage.",
            _last('last("voltage_v")', "battery"),
            "volt",
            defaults={"decimals": 1},
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Battery health",
            "Last reported state of health.",
            _last('last("health_pct")', "battery"),
            "percent",
            defaults={"thresholds": thresholds(("red", None), ("orange", 70), ("green", 85))},
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Odometer",
            "Last odometer reading (Segways).",
            _last('last("odometer_km")', "status"),
            "lengthkm",
            defaults={"decimals": 1},
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Est. range",
            "Range the device estimates on its last charge.",
            _last('last("range_km")', "status"),
            "lengthkm",
            defaults={"decimals": 1},
        ),
        4,
        5,
    )
    lay.row("Battery")
    lay.add(
        timeseries(
            "Charge",
            "Charge over time; shaded while on the charger is not shown "
            "here: see the state timeline.",
            [target(series('mean("pct") AS "charge"', "battery"))],
            "percent",
            defaults={"min": 0, "max": 100, "thresholds": CHARGE},
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Voltage and current",
            "Pack voltage (left) and current (right; negative = discharging).",
            [
                target(
                    series(
                        'mean("voltage_v") AS "voltage", mean("current_a") AS "current"', "battery"
                    )
                )
            ],
            "volt",
            overrides=[
                by_name(
                    "current",
                    {"id": "unit", "value": "amp"},
                    {"id": "custom.axisPlacement", "value": "right"},
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Temperature",
            "Battery temperature: mean and peak per interval.",
            [target(series('mean("temp_c") AS "mean", max("temp_c") AS "max"', "battery"))],
            "celsius",
        ),
        12,
        8,
    )
    lay.add(
        state_timeline(
            "State",
            "What the device was doing, over time.",
            [target(series('last("state") AS "state"', "status", "previous"))],
        ),
        12,
        8,
    )
    lay.row("Movement and faults")
    lay.add(
        geomap(
            "Track",
            "Where the device went in the time range (one point per interval).",
            [
                target(
                    series('last("lat") AS "lat", last("lon") AS "lon"', "location", "none"),
                    fmt="table",
                )
            ],
            coords_layer(
                "route",
                "Track",
                {
                    "style": {"size": {"fixed": 3}, "color": {"fixed": "blue"}, "opacity": 0.8},
                    "arrow": 1,
                },
            ),
            measure=True,
        ),
        12,
        12,
    )
    lay.add(
        timeseries(
            "Distance per hour",
            "Kilometres ridden per hour (odometer increase).",
            [
                target(
                    'SELECT spread("odometer_km") AS "km" FROM "status" WHERE '
                    f"{DEV} AND $timeFilter GROUP BY time(1h) fill(0)"
                )
            ],
            "lengthkm",
            bars=True,
        ),
        12,
        6,
    )
    lay.add(
        timeseries(
            "Error code",
            "The device's error code (0 = none); a fault alert fires on any other value.",
            [target(series('max("error_code") AS "error_code"', "status", "previous"))],
            "none",
            defaults={
                "thresholds": thresholds(("green", None), ("red", 1)),
                "custom": {
                    "drawStyle": "line",
                    "lineInterpolation": "stepAfter",
                    "fillOpacity": 20,
                    "showPoints": "never",
                    "spanNulls": 3600000,
                    "thresholdsStyle": {"mode": "line"},
                },
            },
        ),
        12,
        6,
    )
    lay.add(
        table(
            "Alert history",
            "Every alert event of this device (fire, resolve, repeat).",
            [
                target(
                    'SELECT "state", "message", "value" FROM "alert" WHERE '
                    f'{DEV} AND $timeFilter GROUP BY "rule", "severity"',
                    fmt="table",
                )
            ],
            "none",
            transformations=[{"id": "merge", "options": {}}],
            overrides=[unit_override("Time", "dateTimeAsLocal")],
            sort_by=[{"displayName": "Time", "desc": True}],
        ),
        24,
        8,
    )
    return dashboard(
        "fleet-device",
        "Device detail",
        "One device: battery, state, track, odometer, faults and alerts.",
        lay,
        [SITE, KIND, device_variable(multi=False)],
        "now-24h",
        ["device"],
    )
