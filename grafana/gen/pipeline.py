# ruff: noqa: S608 - InfluxQL text for dashboards, built from constants, never from input
"""Data completeness and pipeline: did every reading arrive, and is the collector healthy?"""

from __future__ import annotations

from gen.common import (
    DEV,
    GREEN,
    KIND,
    SEL,
    SITE,
    Layout,
    dashboard,
    device_variable,
    series,
    target,
    thresholds,
)
from gen.model import Dashboard
from gen.panels import bargauge, stat, table, timeseries, unit_override

# The collector's dead-letter reasons (fleet.daemon.wire.Reason), one counter each. Copied, as
# the generator does not import the daemon; tests/grafana/test_dashboard_structure.py checks
# that both name the same reasons.
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
# The collector's own pipeline points carry an empty device tag; per-device points a device
# and the device's site. A collector is no site's (it may own several, and collectors sharing
# a broker may share site.id): its panels show every collector, one series per instance,
# whatever sites are chosen.
COLLECTOR = "\"device\" = ''"


def build() -> Dashboard:
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
            [
                target(
                    series(
                        'max("spool_points") AS "points"',
                        "pipeline",
                        "none",
                        COLLECTOR,
                        by=("instance",),
                    ),
                    alias="$tag_instance",
                )
            ],
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
                    series(
                        'mean("write_ms_p50") AS "write p50", max("write_ms_max") AS '
                        '"write max", max("lag_ms_max") AS "spool lag max"',
                        "pipeline",
                        "none",
                        COLLECTOR,
                        by=("instance",),
                    ),
                    alias="$tag_instance $col",
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
            "Seconds since each collector started (its last report).",
            f'SELECT last("uptime_s") FROM "pipeline" WHERE {COLLECTOR} AND $timeFilter '
            'GROUP BY "instance"',
            "s",
            defaults={"thresholds": GREEN},
            alias="$tag_instance",
        ),
        6,
        6,
    )
    lay.add(
        stat(
            "Messages received",
            "Messages the collectors took in during the time range (each counts its own).",
            'SELECT sum("received") FROM (SELECT spread("received") AS "received" '
            f'FROM "pipeline" WHERE {COLLECTOR} AND $timeFilter GROUP BY "instance")',
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
                    series(
                        'count("uptime_s") AS "reports"',
                        "pipeline",
                        "0",
                        COLLECTOR,
                        by=("instance",),
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
