# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""Fleet overview: which device is ready for the next shift, where each one is, what is wrong."""

from __future__ import annotations

from gen.common import (
    CHARGE,
    KIND,
    SEL,
    SITE,
    Layout,
    dashboard,
    last_per_device,
    target,
    thresholds,
)
from gen.model import Dashboard
from gen.panels import (
    bargauge,
    by_name,
    coords_layer,
    geomap,
    stat,
    state_mappings,
    table,
    unit_override,
)


def build() -> Dashboard:
    lay = Layout()
    lay.row("Now")
    last_pct = last_per_device('last("pct") AS "pct"')
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
                q=last_per_device('last("pct") AS "pct", last("charging") AS "charging"'),
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
                    last_per_device('last("pct") AS "charge", last("charging") AS "charging"'),
                    "A",
                    "table",
                ),
                target(
                    last_per_device(
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
                by_name(
                    "Charge",
                    {"id": "unit", "value": "percent"},
                    {"id": "min", "value": 0},
                    {"id": "max", "value": 100},
                    {"id": "thresholds", "value": CHARGE},
                    {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                ),
                by_name(
                    "Charging",
                    {"id": "unit", "value": "bool_yes_no"},
                ),
                by_name(
                    "State",
                    {"id": "mappings", "value": state_mappings()},
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                ),
                unit_override("Last seen", "dateTimeFromNow"),
                unit_override("Est. range", "lengthkm"),
                by_name(
                    "Open alerts",
                    {"id": "unit", "value": "none"},
                    {"id": "noValue", "value": "0"},
                    {"id": "thresholds", "value": thresholds(("green", None), ("red", 1))},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                ),
            ],
        ),
        14,
        12,
    )
    lay.add(
        bargauge(
            "Charge by device",
            "Last charge of every device (red < 25 %, green ≥ 50 %).",
            [target(last_per_device('last("pct")'), alias="$tag_device")],
            "percent",
            defaults={"thresholds": CHARGE, "min": 0, "max": 100},
        ),
        10,
        12,
    )
    lay.row("Where and what")
    lay.add(
        geomap(
            "Last positions",
            "Each device's last reported position; the tooltip names it. Needs tile access for "
            "the base map (offline: Grafana's built-in world map).",
            [
                target(
                    last_per_device('last("lat") AS "lat", last("lon") AS "lon"', "location"),
                    fmt="table",
                )
            ],
            coords_layer(
                "markers",
                "Devices",
                {
                    "showLegend": False,
                    "style": {
                        "size": {"fixed": 8},
                        "color": {"fixed": "dark-green"},
                        "text": {"field": "device", "mode": "field", "fixed": ""},
                        "textConfig": {"fontSize": 11, "offsetY": -12},
                    },
                },
            ),
            measure=False,
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
