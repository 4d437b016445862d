# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""What every dashboard shares: the datasource, the variables and their filters, the grid
layout and the dashboard frame."""

from __future__ import annotations

from gen.model import (
    Dashboard,
    DataSourceRef,
    Panel,
    PanelBody,
    ResultFormat,
    Row,
    Step,
    Target,
    Thresholds,
    Variable,
)

DATASOURCE_UID = "fleet-influxdb"  # the provisioned datasource keeps this uid in every variant
DS: DataSourceRef = {"type": "influxdb", "uid": DATASOURCE_UID}
SEL = '"site" =~ /^$site$/ AND "kind" =~ /^$kind$/'
DEV = '"device" =~ /^$device$/'
ROLLUP = '"rp_1h"'
SCHEMA_VERSION = 41  # Grafana 12's classic dashboard JSON


def target(
    query: str, ref: str = "A", fmt: ResultFormat = "time_series", alias: str = ""
) -> Target:
    t: Target = {
        "refId": ref,
        "datasource": DS,
        "rawQuery": True,
        "resultFormat": fmt,
        "query": query,
    }
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps: tuple[str, float | None]) -> Thresholds:
    return {"mode": "absolute", "steps": [Step(color=c, value=v) for c, v in steps]}


GREEN = thresholds(("green", None))
CHARGE = thresholds(("red", None), ("orange", 25), ("green", 50))


def last_per_device(expr: str, measurement: str = "battery") -> str:
    return (
        f'SELECT {expr} FROM "{measurement}" WHERE {SEL} AND $timeFilter '
        'GROUP BY "site", "kind", "device"'
    )


def series(
    expr: str, measurement: str, fill: str = "null", where: str = DEV, by: tuple[str, ...] = ()
) -> str:
    """One series per auto interval (and per tag in `by`), for the panels of one device or of
    the collector."""
    tags = "".join(f', "{tag}"' for tag in by)
    return (
        f'SELECT {expr} FROM "{measurement}" WHERE {where} AND $timeFilter '
        f"GROUP BY time($__interval){tags} fill({fill})"
    )


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.panels: list[Panel | Row] = []
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

    def add(self, body: PanelBody, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        placed: Panel = {
            **body,
            "id": len(self.panels) + 1,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
        }
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(placed)


def variable(name: str, label: str, query: str, *, multi: bool = True) -> Variable:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time range change: devices appear as they report
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        # "All" as a regex that matches every value, not a list Grafana would have to
        # expand (queries match variables with =~ /^$var$/ for that reason)
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


def device_variable(multi: bool) -> Variable:
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
    variables: list[Variable],
    time_from: str,
    tags: list[str],
) -> Dashboard:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fleet", *tags],
        "timezone": "browser",
        "editable": False,  # provisioned: edits belong in the generator
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
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
