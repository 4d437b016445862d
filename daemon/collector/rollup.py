"""The hourly roll-up on InfluxDB 1.x: which aggregate of which field, as continuous queries.

Long-range Grafana panels read `"<downsample_policy>".<measurement>` instead of the raw
readings. `mean(*)` would do for numbers only: booleans and strings cannot be averaged and
would vanish, and the wildcard renames every field to `mean_<field>`. So each measurement has
its own continuous query with explicit aggregates; a field keeps its raw name for its main
aggregate (mean for levels, last for states and positions) so a panel query reads the same on
both policies, and extra aggregates get a suffix (`pct_min`, `speed_kmh_max`).

A field that only some devices send (`cell_spread_v`, `pack_ids`: a PT's packs) costs the
others nothing: InfluxDB's SELECT ... INTO leaves a null aggregate out of the point it
writes, so their roll-up points are the same as before the field existed. Changing this
table changes the CQs: the collector replaces a CQ whose stored definition differs at its
next start (sinks.V1Sink.bootstrap; InfluxDB 1.x cannot alter one).

RESAMPLE EVERY/FOR makes the server recompute the last hours again and again: the current
hour shows up in the roll-up `downsample_every` after its readings, and readings an agent
delivers late (store and forward) are still counted while their hour is recomputed. Later
than that they are not: `late_before_ms` says which readings the CQs will no longer see, and
the collector recomputes their hours itself with the same SELECT (`backfill_statement`,
daemon/collector/backfill.py).

When InfluxDB 1.x last recomputes an hour (services/continuous_querier/service.go): a CQ
runs at every multiple of EVERY (Go's `Time.Truncate`, which counts from 0001-01-01 UTC -
the same grid as the Unix epoch whenever EVERY divides a day) and recomputes the buckets
from `truncate_1h(run + 1h - FOR - 1ns)`. So the hour starting at H is recomputed for the
last time by the run at `floor_EVERY(H + FOR)`: with EVERY 10m and FOR 2h, the 09:00 hour
for the last time at 11:00. A point InfluxDB took before that run is in the roll-up; one
taken at or after it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLLUP_INTERVAL = "1h"
HOUR_MS = 3_600_000  # ROLLUP_INTERVAL in ms: the CQ's GROUP BY time(1h) buckets
# Go's zero time (0001-01-01 UTC) is this long before the Unix epoch (719,162 days).
_GO_ZERO_MS = 62_135_596_800_000

# (aggregate, raw field, roll-up field)
_AGGREGATES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "battery": (
        ("mean", "pct", "pct"),
        ("min", "pct", "pct_min"),
        ("max", "pct", "pct_max"),
        ("first", "pct", "pct_first"),
        ("last", "pct", "pct_last"),
        ("mean", "voltage_v", "voltage_v"),
        ("mean", "current_a", "current_a"),
        ("mean", "temp_c", "temp_c"),
        ("max", "temp_c", "temp_c_max"),
        ("last", "health_pct", "health_pct"),
        ("last", "charging", "charging"),
        # A pack's balance (issue 13): the mean is the hour's typical spread, whose slow rise
        # is the ageing a fleet manager watches; the max is the worst moment (spread grows
        # under load), the warning a mean would dilute.
        ("mean", "cell_spread_v", "cell_spread_v"),
        ("max", "cell_spread_v", "cell_spread_v_max"),
        # A string: only selectors apply. Both ends of the hour, so the hour a pack was
        # swapped shows the pair before and after (first != last).
        ("last", "pack_ids", "pack_ids"),
        ("first", "pack_ids", "pack_ids_first"),
        ("count", "pct", "samples"),
    ),
    "location": (
        ("last", "lat", "lat"),
        ("last", "lon", "lon"),
        ("mean", "speed_kmh", "speed_kmh"),
        ("max", "speed_kmh", "speed_kmh_max"),
        ("count", "lat", "samples"),
    ),
    "status": (
        ("last", "state", "state"),
        ("last", "odometer_km", "odometer_km"),
        ("spread", "odometer_km", "distance_km"),
        ("last", "range_km", "range_km"),
        ("max", "error_code", "error_code"),
        ("mean", "rssi_dbm", "rssi_dbm"),
        ("last", "locked", "locked"),
        ("last", "firmware", "firmware"),
        # The vehicle's own speedometer, as location's speed_kmh (a position fix's) is kept.
        ("mean", "speed_kmh", "speed_kmh"),
        ("max", "speed_kmh", "speed_kmh_max"),
        ("count", "state", "samples"),
    ),
}


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, safe for any name."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ContinuousQuery:
    name: str
    statement: str  # the CREATE CONTINUOUS QUERY statement


def rollup_fields(measurement: str) -> dict[str, str]:
    """Roll-up field -> the raw field it aggregates, for one measurement."""
    return {alias: field for _, field, alias in _AGGREGATES[measurement]}


def measurements() -> tuple[str, ...]:
    return tuple(_AGGREGATES)


def select_into(
    database: str, raw_policy: str, rollup_policy: str, measurement: str, where: str = ""
) -> str:
    """The SELECT ... INTO of one measurement's roll-up (the body of its CQ; also a backfill)."""
    db = quote_ident(database)
    columns = ", ".join(
        f"{agg}({quote_ident(field)}) AS {quote_ident(alias)}"
        for agg, field, alias in _AGGREGATES[measurement]
    )
    m = quote_ident(measurement)
    source = f"{db}.{quote_ident(raw_policy)}.{m}"
    target = f"{db}.{quote_ident(rollup_policy)}.{m}"
    where_clause = f" WHERE {where}" if where else ""
    # "*" in GROUP BY keeps the tags as tags; without it INTO would turn them into fields.
    return (
        f"SELECT {columns} INTO {target} FROM {source}{where_clause} "  # noqa: S608 - quoted ids
        f"GROUP BY time({ROLLUP_INTERVAL}), *"
    )


def cq_name(measurement: str, rollup_policy: str) -> str:
    return f"cq_{measurement}_{rollup_policy}"


def continuous_queries(
    database: str, raw_policy: str, rollup_policy: str, every: str, lookback: str
) -> list[ContinuousQuery]:
    """One CQ per measurement, recomputing the last `lookback` every `every`."""
    queries = []
    for measurement in _AGGREGATES:
        name = cq_name(measurement, rollup_policy)
        body = select_into(database, raw_policy, rollup_policy, measurement)
        statement = (
            f"CREATE CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(database)} "
            f"RESAMPLE EVERY {every} FOR {lookback} BEGIN {body} END"
        )
        queries.append(ContinuousQuery(name, statement))
    return queries


def backfill_statement(
    database: str,
    raw_policy: str,
    rollup_policy: str,
    measurement: str,
    start_ms: int,
    end_ms: int,
) -> str:
    """The CQ's own SELECT ... INTO, for the whole hours in [start_ms, end_ms) only."""
    where = f"time >= {start_ms}ms AND time < {end_ms}ms"
    return select_into(database, raw_policy, rollup_policy, measurement, where)


def hour_of(ts_ms: int) -> int:
    """The start of the roll-up bucket (UTC hour) a point stamped `ts_ms` falls in."""
    return ts_ms - ts_ms % HOUR_MS


def last_cq_run_ms(hour_ms: int, every_ms: int, for_ms: int) -> int:
    """When (InfluxDB's clock) a CQ with RESAMPLE EVERY/FOR recomputes this hour the last time."""
    edge = hour_ms + for_ms
    return edge - (edge + _GO_ZERO_MS) % every_ms


def late_before_ms(now_ms: int, every_ms: int, for_ms: int, margin_ms: int) -> int:
    """Points stamped before this, taken by InfluxDB at `now_ms`, miss the CQs.

    A point is late when the last CQ run over its hour is not after `now_ms + margin_ms`
    (the margin: how far InfluxDB's clock may be ahead of ours). The last run grows with
    the hour, so the late hours are exactly those before the first hour still to come.
    """
    horizon = now_ms + margin_ms
    # last_cq_run_ms(h) > h + FOR - EVERY: no hour after this one can be late.
    hour = hour_of(horizon - for_ms + every_ms)
    while last_cq_run_ms(hour, every_ms, for_ms) > horizon:
        hour -= HOUR_MS
    return hour + HOUR_MS
