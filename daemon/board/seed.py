"""After a restart, refill the board's view from InfluxDB: the charge history and latest values.

Best effort: the board works without it (devices show "never heard from" until they report,
and drain is the kind's default until history builds up again), so any failure is logged
and counted as nothing seeded - never fatal. One /query request (InfluxDB 1.x, or 2.x/3.x
through their v1-compatible API) with four statements:

- the charge history, one point per `board.history_step_s` bucket (the last pct and
  charging flag of each), over the last `board.history_hours`;
- the newest battery, status and location point of each device, so `latest` carries the
  reading's exact time (a bucket's time is its start, and would make a device look staler).

The rows become `DecodedReading`s fed to `FleetView.observe`, the very path live readings
take, so merging and history rules stay in one place.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import defaultdict
from typing import Any

import urllib3

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.board.fleetview import FleetView

_LOG = logging.getLogger(__name__)
_TAGS = '"site", "kind", "device"'


class _NothingYet(Exception):
    """The database does not exist yet: nothing was ever written (a first start)."""


def seed_from_influx(view: FleetView, settings: FleetSettings) -> int:
    """Feed the last `board.history_hours` from InfluxDB into `view`; readings fed (0 on
    failure, which is logged)."""
    try:
        results = _query(settings, _statements(settings))
        return _feed(view, results)
    except _NothingYet as exc:  # a first start: the writer creates the database later
        _LOG.info("board: nothing to refill from InfluxDB yet (%s)", exc)
        return 0
    except Exception as exc:  # noqa: BLE001 - best effort: the board fills itself as devices report
        _LOG.warning("board: could not seed the history from InfluxDB (%s)", _safe(exc))
        return 0


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _statements(settings: FleetSettings) -> list[str]:
    influx, board = settings.influx, settings.board
    rp = _ident(influx.retention_policy) if influx.retention_policy else ""
    source = f"{_ident(influx.database)}.{rp}."
    since = f"time > now() - {int(board.history_hours * 3600)}s"
    step = f"{int(board.history_step_s)}s"
    newest = " GROUP BY {tags} ORDER BY time DESC LIMIT 1"
    # Identifiers are quoted and the numbers come from validated settings (S608).
    return [
        f'SELECT last("pct") AS "pct", last("charging") AS "charging" FROM {source}"battery" '  # noqa: S608
        f"WHERE {since} GROUP BY time({step}), {_TAGS} fill(none)",
        *(
            f'SELECT * FROM {source}"{m}" WHERE {since}' + newest.format(tags=_TAGS)  # noqa: S608
            for m in ("battery", "status", "location")
        ),
    ]


def _query(settings: FleetSettings, statements: list[str]) -> list[dict[str, Any]]:
    influx = settings.influx
    headers: dict[str, str] = {}
    if influx.token is not None:
        headers["Authorization"] = f"Token {influx.token.get_secret_value()}"
    elif influx.username is not None:
        password = influx.password.get_secret_value() if influx.password else ""
        pair = f"{influx.username}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=influx.timeout_s))
    try:
        decoded = _ask(http, settings, headers, "; ".join(statements))
        results = decoded.get("results", [])
        errors = [str(r["error"]) for r in results if isinstance(r, dict) and r.get("error")]
        if errors:
            # A failed statement stops the rest, which only say "not executed"; so does a
            # missing database or retention policy, with nothing else to tell: ask which.
            real = [e for e in errors if e != "not executed"]
            if not real:
                show = f"SHOW RETENTION POLICIES ON {_ident(influx.database)}"
                answer = _ask(http, settings, headers, show).get("results", [{}])[0]
                if str(answer.get("error", "")).startswith("database not found"):
                    raise _NothingYet(f"database {influx.database!r} not found")
            raise RuntimeError(
                real[0]
                if real
                else f"query not executed: does the retention policy "
                f"{influx.retention_policy!r} exist in {influx.database!r}?"
            )
    finally:
        http.clear()
    return [r for r in results if isinstance(r, dict)]


def _ask(
    http: urllib3.PoolManager, settings: FleetSettings, headers: dict[str, str], q: str
) -> dict[str, Any]:
    influx = settings.influx
    response = http.request(
        "POST",
        f"{influx.url.rstrip('/')}/query",
        fields={"q": q, "db": influx.database, "epoch": "ms"},
        encode_multipart=False,
        headers=headers,
    )
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.data[:200]!r}")
    decoded = json.loads(response.data)
    if not isinstance(decoded, dict):
        raise RuntimeError("unexpected reply")
    if decoded.get("error"):
        raise RuntimeError(str(decoded["error"]))
    return decoded


def _rows(result: dict[str, Any]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Each row of a statement's result as (its series' tags, column -> value)."""
    out: list[tuple[dict[str, str], dict[str, Any]]] = []
    for series in result.get("series", []):
        tags = series.get("tags", {})
        columns = series.get("columns", [])
        out.extend(
            (tags, dict(zip(columns, values, strict=False))) for values in series.get("values", [])
        )
    return out


def _feed(view: FleetView, results: list[dict[str, Any]]) -> int:
    measurements = ("battery", "battery", "status", "location")
    by_ts: dict[int, list[wire.DecodedReading]] = defaultdict(list)
    for measurement, result in zip(measurements, results, strict=False):
        for tags, row in _rows(result):
            r = _reading(tags, row, measurement)
            if r is not None:
                by_ts[r.ts_ms].append(r)
    # Oldest first, one batch per time, each "heard" at its own time: the newest status
    # and location points then merge into latest as they would have live.
    for ts in sorted(by_ts):
        view.observe(by_ts[ts], heard_ms=ts)
    fed = sum(len(batch) for batch in by_ts.values())
    _LOG.info("board: seeded %d readings from InfluxDB", fed)
    return fed


def _reading(
    tags: dict[str, str], row: dict[str, Any], measurement: str
) -> wire.DecodedReading | None:
    """One row as a reading; a row that does not fit the contract is skipped (not fatal)."""
    try:
        device, site, kind = tags["device"], tags["site"], tags["kind"]
        ts_ms = int(row["time"])
        battery = status = location = None
        if measurement == "battery":
            pct = _num(row.get("pct"))
            charging = row.get("charging")
            battery = wire.Battery(
                pct=pct,
                charging=charging if isinstance(charging, bool) else None,
                current_a=_num(row.get("current_a")),
                temp_c=_num(row.get("temp_c")),
            )
        elif measurement == "status":
            state = row.get("state")
            code = row.get("error_code")
            status = wire.Status(
                state=wire.State(state) if isinstance(state, str) else None,
                error_code=int(code) if isinstance(code, int | float) else None,
                range_km=_num(row.get("range_km")),
                odometer_km=_num(row.get("odometer_km")),
            )
        else:
            lat, lon = _num(row.get("lat")), _num(row.get("lon"))
            if lat is None or lon is None:
                return None
            location = wire.Location(lat=lat, lon=lon)
        wire.check_id("device", device)
    except (KeyError, TypeError, ValueError):
        return None
    return wire.DecodedReading(
        site, kind, device, None, ts_ms, battery, location, status, "telemetry"
    )


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _safe(exc: BaseException) -> str:
    # urllib3's messages carry the URL, never credentials (they go in a header).
    return f"{type(exc).__name__}: {str(exc)[:300]}"
