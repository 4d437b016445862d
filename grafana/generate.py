# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""Writes grafana/dashboards/*.json: the four dashboards as code, so layout and conventions
(datasource uid, units, reduce calcs, variables) are the same everywhere.

Run `python grafana/generate.py` after editing; tests/grafana checks the JSON it writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "influxdb", "uid": "fleet-influxdb"}
HERE = Path(__file__).resolve().parent
SEL = '"site" =~ /^$site$/ AND "kind" =~ /^$kind$/'
DEV = '"device" =~ /^$device$/'
ROLLUP = '"rp_1h"'
STATES = {
    "riding": ("green", 0),
    "idle": ("text", 1),
    "charging": ("blue", 2),
    "docked": ("purple", 3),
    "fault": ("red", 4),
    "off": ("dark-gray", 5),
}
Json = dict[str, Any]


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> Json:
    t: Json = {
        "refId": ref,
        "datasource": DS,
        "rawQuery": True,
        "resultFormat": fmt,
        "query": query,
    }
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


GREEN = thresholds(("green", None))
CHARGE = thresholds(("red", None), ("orange", 25), ("green", 50))


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": len(self.panels) + 1,
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def _newline(self) -> None:
        self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def add(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    options: Json | None = None,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    interval: str = "",
) -> Json:
    fd: Json = {"unit": unit, "thresholds": GREEN, "mappings": [], "color": {"mode": "thresholds"}}
    fd.update(defaults or {})
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": fd, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    if interval:
        p["interval"] = interval
    return p


def reduce(calcs: list[str] | None = None, values: bool = False) -> Json:
    return {"values": values, "calcs": calcs or ["lastNotNull"], "fields": ""}


def stat(title: str, description: str, query: str, unit: str, **kw: Any) -> Json:
    options = {
        "reduceOptions": reduce(kw.pop("calcs", None)),
        "colorMode": kw.pop("color_mode", "value"),
        "graphMode": kw.pop("graph_mode", "none"),
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "orientation": "auto",
    }
    defaults = {"noValue": "0"} | kw.pop("defaults", {})
    return panel(
        "stat",
        title,
        description,
        [target(query, **kw)],
        unit=unit,
        options=options,
        defaults=defaults,
    )


def timeseries(
    title: str, description: str, targets: list[Json], unit: str, *, bars: bool = False, **kw: Any
) -> Json:
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": 3600000,
        "axisSoftMin": 0 if unit in ("percent", "lengthkm") else None,
        "stacking": {"mode": "none", "group": "A"},
    }
    options = {
        "legend": {
            "showLegend": True,
            "displayMode": "table",
            "placement": "right",
            "calcs": ["lastNotNull", "min", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    defaults = {"custom": custom, "color": {"mode": "palette-classic"}} | kw.pop("defaults", {})
    return panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=defaults,
        **kw,
    )


def table(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    options = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "countRows": False},
        "sortBy": kw.pop("sort_by", []),
    }
    return panel("table", title, description, targets, unit=unit, options=options, **kw)


def bargauge(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Json:
    options = {
        "orientation": "horizontal",
        "displayMode": "gradient",
        "valueMode": "color",
        "namePlacement": "auto",
        "showUnfilled": True,
        "sizing": "auto",
        "minVizWidth": 8,
        "minVizHeight": 16,
        "maxVizHeight": 300,
        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom", "calcs": []},
        "reduceOptions": reduce(values=kw.pop("values", False)),
    }
    return panel("bargauge", title, description, targets, unit=unit, options=options, **kw)


def unit_override(field: str, unit: str, name: str = "") -> Json:
    props: list[Json] = [{"id": "unit", "value": unit}]
    if name:
        props.append({"id": "displayName", "value": name})
    return {"matcher": {"id": "byName", "options": field}, "properties": props}


def state_mappings() -> list[Json]:
    return [
        {
            "type": "value",
            "options": {s: {"color": c, "index": i, "text": s} for s, (c, i) in STATES.items()},
        }
    ]


def variable(name: str, label: str, query: str, *, multi: bool = True) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "options": [],
        "hide": 0,
        "regex": "",
    }


SITE = variable("site", "Site", 'SHOW TAG VALUES FROM "battery" WITH KEY = "site"')
KIND = variable(
    "kind", "Kind", 'SHOW TAG VALUES FROM "battery" WITH KEY = "kind" WHERE "site" =~ /^$site$/'
)


def device_variable(multi: bool) -> Json:
    return variable(
        "device",
        "Device",
        f'SHOW TAG VALUES FROM "battery" WITH KEY = "device" WHERE {SEL}',
        multi=multi,
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[Json],
    time_from: str,
    tags: list[str],
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fleet", *tags],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 41,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Fleet",
                "type": "dashboards",
                "tags": ["fleet"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout.panels,
    }


def _last_per_device(expr: str, measurement: str = "battery") -> str:
    return (
        f'SELECT {expr} FROM "{measurement}" WHERE {SEL} AND $timeFilter '
        'GROUP BY "site", "kind", "device"'
    )


def fleet_overview() -> Json:
    lay = Layout()
    lay.row("Now")
    last_pct = _last_per_device('last("pct") AS "pct"')
    count_where = 'SELECT count("pct") AS "devices" FROM ({q}) WHERE {cond}'
    lay.add(
        stat(
            "Ready (≥ 50 %)",
            "Devices whose last charge is at least 50 %.",
            count_where.format(q=last_pct, cond='"pct" >= 50'),
            "none",
            color_mode="background",
            defaults={"thresholds": thresholds(("green", None))},
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Low (< 25 %)",
            "Devices whose last charge is below 25 %: charge before a shift.",
            count_where.format(q=last_pct, cond='"pct" < 25'),
            "none",
            color_mode="background",
            defaults={"thresholds": thresholds(("green", None), ("orange", 1))},
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Charging",
            "Devices on a charger now (last reading says charging).",
            count_where.format(
                q=_last_per_device('last("pct") AS "pct", last("charging") AS "charging"'),
                cond='"charging" = true',
            ),
            "none",
            defaults={"thresholds": thresholds(("blue", None))},
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Offline (silent > 10 min)",
            "Devices whose 'offline' alert fires: the collector raises it when a device has "
            "sent nothing for its kind's expected silence (10 min by default).",
            'SELECT count("state") AS "devices" FROM (SELECT last("state") AS "state" '
            f'FROM "alert" WHERE "rule" = \'offline\' AND {SEL} AND $timeFilter '
            """GROUP BY "device") WHERE "state" = 'firing' """,
            "none",
            color_mode="background",
            defaults={"thresholds": thresholds(("green", None), ("red", 1))},
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Open alerts",
            "Alerts whose last event is 'firing' (any rule, any severity).",
            'SELECT count("state") AS "alerts" FROM (SELECT last("state") AS "state" '
            f'FROM "alert" WHERE {SEL} AND $timeFilter GROUP BY "device", "rule") '
            "WHERE \"state\" = 'firing'",
            "none",
            color_mode="background",
            defaults={"thresholds": thresholds(("green", None), ("red", 1))},
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Mean charge",
            "Mean of every device's last charge.",
            f'SELECT mean("pct") AS "pct" FROM ({last_pct})',
            "percent",
            defaults={"thresholds": CHARGE, "min": 0, "max": 100, "decimals": 0},
        ),
        4,
        4,
    )
    lay.add(
        table(
            "Readiness",
            "One row per device: last charge, on the charger or not, state, last seen, estimated "
            "range and open alerts. Sorted by charge, emptiest first.",
            [
                target(
                    _last_per_device('last("pct") AS "charge", last("charging") AS "charging"'),
                    "A",
                    "table",
                ),
                target(
                    _last_per_device(
                        'last("state") AS "state", last("range_km") AS "range_km"', "status"
                    ),
                    "B",
                    "table",
                ),
                target(
                    'SELECT count("state") AS "open_alerts" FROM (SELECT last("state") AS "state" '
                    f'FROM "alert" WHERE {SEL} AND $timeFilter GROUP BY "device", "rule") '
                    'WHERE "state" = \'firing\' GROUP BY "device"',
                    "C",
                    "table",
                ),
            ],
            "none",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {},
                        "indexByName": {
                            "device": 0,
                            "kind": 1,
                            "site": 2,
                            "charge": 3,
                            "charging": 4,
                            "state": 5,
                            "Time": 6,
                            "range_km": 7,
                            "open_alerts": 8,
                        },
                        "renameByName": {
                            "device": "Device",
                            "kind": "Kind",
                            "site": "Site",
                            "charge": "Charge",
                            "charging": "Charging",
                            "state": "State",
                            "Time": "Last seen",
                            "range_km": "Est. range",
                            "open_alerts": "Open alerts",
                        },
                    },
                },
            ],
            sort_by=[{"displayName": "Charge", "desc": False}],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "Charge"},
                    "properties": [
                        {"id": "unit", "value": "percent"},
                        {"id": "min", "value": 0},
                        {"id": "max", "value": 100},
                        {"id": "thresholds", "value": CHARGE},
                        {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                    ],
                },
                {
                    "matcher": {"id": "byName", "options": "Charging"},
                    "properties": [{"id": "unit", "value": "bool_yes_no"}],
                },
                {
                    "matcher": {"id": "byName", "options": "State"},
                    "properties": [
                        {"id": "mappings", "value": state_mappings()},
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                    ],
                },
                unit_override("Last seen", "dateTimeFromNow"),
                unit_override("Est. range", "lengthkm"),
                {
                    "matcher": {"id": "byName", "options": "Open alerts"},
                    "properties": [
                        {"id": "unit", "value": "none"},
                        {"id": "noValue", "value": "0"},
                        {"id": "thresholds", "value": thresholds(("green", None), ("red", 1))},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    ],
                },
            ],
        ),
        14,
        12,
    )
    lay.add(
        bargauge(
            "Charge by device",
            "Last charge of every device (red < 25 %, green ≥ 50 %).",
            [target(_last_per_device('last("pct")'), alias="$tag_device")],
            "percent",
            defaults={"thresholds": CHARGE, "min": 0, "max": 100},
        ),
        10,
        12,
    )
    lay.row("Where and what")
    lay.add(
        panel(
            "geomap",
            "Last positions",
            "Each device's last reported position; the tooltip names it. Needs tile access for "
            "the base map (offline: Grafana's built-in world map).",
            [
                target(
                    _last_per_device('last("lat") AS "lat", last("lon") AS "lon"', "location"),
                    fmt="table",
                )
            ],
            unit="none",
            options={
                "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 14, "allLayers": True},
                "controls": {
                    "showZoom": True,
                    "mouseWheelZoom": True,
                    "showAttribution": True,
                    "showScale": True,
                    "showMeasure": False,
                    "showDebug": False,
                },
                "basemap": {"type": "default", "name": "Basemap", "config": {}},
                "layers": [
                    {
                        "type": "markers",
                        "name": "Devices",
                        "tooltip": True,
                        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                        "config": {
                            "showLegend": False,
                            "style": {
                                "size": {"fixed": 8},
                                "color": {"fixed": "dark-green"},
                                "text": {"field": "device", "mode": "field", "fixed": ""},
                                "textConfig": {"fontSize": 11, "offsetY": -12},
                            },
                        },
                    }
                ],
                "tooltip": {"mode": "details"},
            },
            overrides=[unit_override("lat", "none"), unit_override("lon", "none")],
        ),
        12,
        12,
    )
    lay.add(
        table(
            "Open alerts",
            "Alerts whose last event is 'firing': device, rule, severity, message.",
            [
                target(
                    'SELECT "state", "message", "value" FROM (SELECT last("state") AS "state", '
                    'last("message") AS "message", last("value") AS "value" FROM "alert" '
                    f'WHERE {SEL} AND $timeFilter GROUP BY "site", "device", "rule", "severity") '
                    'WHERE "state" = \'firing\' GROUP BY "site", "device", "rule", "severity"',
                    fmt="table",
                )
            ],
            "none",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"state": True},
                        "renameByName": {
                            "Time": "Since",
                            "device": "Device",
                            "rule": "Rule",
                            "severity": "Severity",
                            "message": "Message",
                            "value": "Value",
                            "site": "Site",
                        },
                    },
                },
            ],
            overrides=[unit_override("Since", "dateTimeFromNow")],
            sort_by=[{"displayName": "Since", "desc": True}],
        ),
        12,
        12,
    )
    return dashboard(
        "fleet-overview",
        "Fleet overview",
        "Which device is ready for the next shift, where every device is, and what is wrong.",
        lay,
        [SITE, KIND],
        "now-24h",
        ["overview"],
    )


def _series(expr: str, measurement: str, fill: str = "null", where: str = DEV) -> str:
    return (
        f'SELECT {expr} FROM "{measurement}" WHERE {where} AND $timeFilter '
        f"GROUP BY time($__interval) fill({fill})"
    )


def _last(expr: str, measurement: str) -> str:
    return f'SELECT {expr} FROM "{measurement}" WHERE {DEV} AND $timeFilter'


def device_detail() -> Json:
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
            [target(_series('mean("pct") AS "charge"', "battery"))],
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
                    _series(
                        'mean("voltage_v") AS "voltage", mean("current_a") AS "current"', "battery"
                    )
                )
            ],
            "volt",
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "current"},
                    "properties": [
                        {"id": "unit", "value": "amp"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                }
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Temperature",
            "Battery temperature: mean and peak per interval.",
            [target(_series('mean("temp_c") AS "mean", max("temp_c") AS "max"', "battery"))],
            "celsius",
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "state-timeline",
            "State",
            "What the device was doing, over time.",
            [target(_series('last("state") AS "state"', "status", "previous"))],
            unit="none",
            defaults={"mappings": state_mappings(), "color": {"mode": "thresholds"}},
            options={
                "showValue": "auto",
                "rowHeight": 0.9,
                "mergeValues": True,
                "alignValue": "left",
                "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        12,
        8,
    )
    lay.row("Movement and faults")
    lay.add(
        panel(
            "geomap",
            "Track",
            "Where the device went in the time range (one point per interval).",
            [
                target(
                    _series('last("lat") AS "lat", last("lon") AS "lon"', "location", "none"),
                    fmt="table",
                )
            ],
            unit="none",
            options={
                "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 14, "allLayers": True},
                "controls": {
                    "showZoom": True,
                    "mouseWheelZoom": True,
                    "showAttribution": True,
                    "showScale": True,
                    "showMeasure": True,
                    "showDebug": False,
                },
                "basemap": {"type": "default", "name": "Basemap", "config": {}},
                "layers": [
                    {
                        "type": "route",
                        "name": "Track",
                        "tooltip": True,
                        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                        "config": {
                            "style": {
                                "size": {"fixed": 3},
                                "color": {"fixed": "blue"},
                                "opacity": 0.8,
                            },
                            "arrow": 1,
                        },
                    }
                ],
                "tooltip": {"mode": "details"},
            },
            overrides=[unit_override("lat", "none"), unit_override("lon", "none")],
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
            [target(_series('max("error_code") AS "error_code"', "status", "previous"))],
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


def battery_health() -> Json:
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


REASONS = (
    "too_large",
    "bad_topic",
    "unknown_kind",
    "bad_json",
    "schema",
    "range",
    "device_mismatch",
    "registry_mismatch",
    "future_ts",
    "stale_ts",
    "influx_rejected",
    "internal_error",
)
COLLECTOR = '"device" = \'\' AND "site" =~ /^$site$/'


def completeness() -> Json:
    lay = Layout()
    sel = f"{SEL} AND {DEV}"
    lay.row("Readings")
    lay.add(
        timeseries(
            "Completeness per device and hour",
            "Readings received / readings expected (the seq numbers the device used in that hour).",
            [
                target(
                    'SELECT 100 * count("seq") / (spread("seq") + 1) AS "completeness" FROM "battery" '
                    f'WHERE {sel} AND $timeFilter GROUP BY time(1h), "device" fill(none)',
                    alias="$tag_device",
                )
            ],
            "percent",
            defaults={"min": 0, "max": 100},
        ),
        12,
        9,
    )
    lay.add(
        table(
            "Expected vs received per device and hour",
            "Expected = seq span of the hour; a restarted device (seq back to 0) counts too few.",
            [
                target(
                    'SELECT spread("seq") + 1 AS "expected", count("seq") AS "received", '
                    'spread("seq") + 1 - count("seq") AS "missing" FROM "battery" '
                    f'WHERE {sel} AND $timeFilter GROUP BY time(1h), "device" fill(none)',
                    fmt="table",
                )
            ],
            "none",
            transformations=[{"id": "merge", "options": {}}],
            overrides=[unit_override("Time", "dateTimeAsLocal", "Hour")],
            sort_by=[{"displayName": "missing", "desc": True}],
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Seq gaps (collector)",
            "Readings the collector saw missing from each device's seq "
            "numbering, per interval of arrival.",
            [
                target(
                    'SELECT sum("seq_missing") AS "missing" FROM "pipeline" WHERE "device" != \'\' '
                    f'AND {sel} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
                    alias="$tag_device",
                )
            ],
            "none",
            bars=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Readings arriving per site",
            "Readings the collector received per site and interval: "
            "a site whose agent is down goes flat.",
            [
                target(
                    'SELECT sum("received") AS "received" FROM "pipeline" WHERE "device" != \'\' '
                    'AND "site" =~ /^$site$/ AND $timeFilter GROUP BY time($__interval), "site" '
                    "fill(0)",
                    alias="$tag_site",
                )
            ],
            "none",
            bars=True,
        ),
        12,
        8,
    )
    lay.row("Pipeline")
    reason_cols = ", ".join(f'non_negative_difference("rejected_{r}") AS "{r}"' for r in REASONS)
    reason_sums = ", ".join(f'sum("{r}") AS "{r}"' for r in REASONS)
    lay.add(
        bargauge(
            "Dead letters by reason",
            "Messages refused in the time range, by reason (the "
            "collector's counters; a restart loses the increments of its first interval).",
            [
                target(
                    f'SELECT {reason_sums} FROM (SELECT {reason_cols} FROM "pipeline" WHERE '
                    f'{COLLECTOR} AND $timeFilter GROUP BY "instance")'
                )
            ],
            "none",
            values=False,
            defaults={"thresholds": thresholds(("green", None), ("orange", 1))},
        ),
        8,
        9,
    )
    lay.add(
        timeseries(
            "Spool depth",
            "Readings waiting in the collector's disk spool: grows while InfluxDB is away.",
            [target(_series('max("spool_points") AS "points"', "pipeline", "none", COLLECTOR))],
            "none",
        ),
        8,
        9,
    )
    lay.add(
        timeseries(
            "Write latency",
            "InfluxDB write time (median and max per stats interval) and the "
            "longest wait of a reading from spool to InfluxDB.",
            [
                target(
                    _series(
                        'mean("write_ms_p50") AS "write p50", max("write_ms_max") AS '
                        '"write max", max("lag_ms_max") AS "spool lag max"',
                        "pipeline",
                        "none",
                        COLLECTOR,
                    )
                )
            ],
            "ms",
        ),
        8,
        9,
    )
    lay.add(
        stat(
            "Collector uptime",
            "Seconds since the collector started (last report).",
            f'SELECT last("uptime_s") FROM "pipeline" WHERE {COLLECTOR} AND $timeFilter',
            "s",
            defaults={"thresholds": GREEN},
        ),
        6,
        6,
    )
    lay.add(
        stat(
            "Messages received",
            "Messages the collector took in during the time range.",
            f'SELECT spread("received") FROM "pipeline" WHERE {COLLECTOR} AND $timeFilter',
            "short",
        ),
        6,
        6,
    )
    lay.add(
        timeseries(
            "Collector availability",
            "Stats reports per interval from each collector instance: "
            "0 means it was down (it reports every collector.stats_interval_s).",
            [
                target(
                    _series('count("uptime_s") AS "reports"', "pipeline", "0", COLLECTOR).replace(
                        "GROUP BY time($__interval)", 'GROUP BY time($__interval), "instance"'
                    ),
                    alias="$tag_instance",
                )
            ],
            "none",
            bars=True,
        ),
        12,
        6,
    )
    return dashboard(
        "fleet-pipeline",
        "Data completeness and pipeline",
        "Did every reading arrive, and is the collector healthy?",
        lay,
        [SITE, KIND, device_variable(multi=True)],
        "now-24h",
        ["pipeline"],
    )


def main() -> None:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, build in (
        ("fleet-overview", fleet_overview),
        ("device-detail", device_detail),
        ("battery-health", battery_health),
        ("pipeline", completeness),
    ):
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        (out / f"{name}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
