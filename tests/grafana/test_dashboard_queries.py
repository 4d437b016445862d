"""Every panel query and every variable query of every dashboard, rendered the way Grafana
renders it, run against the real InfluxDB that the real collector filled with a simulated day.

A query must return the series its panel expects: no error, at least one series with values,
every column it names with AS present, and only identifiers the collector really writes
(SHOW MEASUREMENTS / FIELD KEYS / TAG KEYS of the filled database, raw and roll-up).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.grafana.conftest import FilledDatabase
from tests.grafana.dashboards import DASHBOARDS, Json, load, targets, variables
from tests.grafana.render import Variable, render

# The selection each dashboard is tested with: All sites and kinds; the faulty Segway where
# one device is chosen (so its error and alert panels have something to show).
SELECTION = {"site": ["$__all"], "kind": ["$__all"], "device": ["sw-02"]}
MULTI_DEVICES = ["sw-01", "sw-02", "hh-01", "hh-02"]
# The collector's `offline` alert needs 10 minutes of wall-clock silence, which a backfilled
# day cannot produce: this panel's query is run and checked, but may return nothing here.
MAY_BE_EMPTY = {"Offline (silent > 10 min)"}


def _rows(filled: FilledDatabase, q: str) -> list[dict[str, Any]]:
    return filled.influx.rows(q, filled.database)


@pytest.fixture(scope="module")
def known_identifiers(filled: FilledDatabase) -> set[str]:
    names = {"rp_1h", "raw", "time"}
    for rp in ("raw", "rp_1h"):
        for m in _rows(filled, f'SHOW MEASUREMENTS ON "{filled.database}"'):
            names.add(m["name"])
            names |= {
                r["fieldKey"] for r in _rows(filled, f'SHOW FIELD KEYS FROM "{rp}"."{m["name"]}"')
            }
            names |= {
                r["tagKey"] for r in _rows(filled, f'SHOW TAG KEYS FROM "{rp}"."{m["name"]}"')
            }
    return names


def _variables(
    dashboard: Json, filled: FilledDatabase, from_ms: int, to_ms: int
) -> dict[str, Variable]:
    """Each variable's options from its own query (in order, as chained in Grafana)."""
    chosen: dict[str, Variable] = {}
    for var in variables(dashboard):
        query = render(var["query"], from_ms=from_ms, to_ms=to_ms, variables=chosen)
        options = [r["value"] for r in _rows(filled, query)]
        assert options, f"variable {var['name']}: {query!r} offers nothing"
        selection = SELECTION[var["name"]]
        if var["name"] == "device" and var["multi"]:
            selection = MULTI_DEVICES
        assert selection == ["$__all"] or set(selection) <= set(options), (var["name"], options)
        chosen[var["name"]] = Variable(
            var["name"], selection, options, var["multi"], var["includeAll"], var["allValue"]
        )
    return chosen


def _cases() -> list[Any]:
    cases = []
    for path in DASHBOARDS:
        dashboard = load(path)
        for panel, target in targets(dashboard):
            ident = f"{path.stem}:{panel['id']}:{panel['title']}:{target['refId']}"
            cases.append(pytest.param(path, panel["id"], target["refId"], id=ident))
    return cases


def _range(dashboard: Json, filled: FilledDatabase) -> tuple[int, int]:
    # The dashboard's own default range ends now; the filled day is the last 24 h.
    days = {"now-24h": 1, "now-7d": 7}[dashboard["time"]["from"]]
    return filled.end_ms - days * 86_400_000, filled.end_ms


@pytest.mark.parametrize(("path", "panel_id", "ref"), _cases())
def test_panel_query_returns_its_series(
    path: Path, panel_id: int, ref: str, filled: FilledDatabase, known_identifiers: set[str]
) -> None:
    dashboard = load(path)
    panel, target = next(
        (p, t) for p, t in targets(dashboard) if p["id"] == panel_id and t["refId"] == ref
    )
    from_ms, to_ms = _range(dashboard, filled)
    chosen = _variables(dashboard, filled, from_ms, to_ms)
    query = render(
        target["query"],
        from_ms=from_ms,
        to_ms=to_ms,
        variables=chosen,
        min_interval=panel.get("interval", "10s"),
    )
    aliases = set(re.findall(r'AS "(\w+)"', query))
    unknown = set(re.findall(r'"(\w+)"', query)) - known_identifiers - aliases
    assert not unknown, f"{query!r} names what the collector does not write: {unknown}"
    result = filled.influx.query(query, filled.database)
    series = [s for r in result["results"] for s in r.get("series", [])]
    if panel["title"] in MAY_BE_EMPTY and not series:
        return
    assert series, f"no series from {query!r}"
    assert all(s["values"] for s in series)
    columns = set(series[0]["columns"])
    outer = query.split(" FROM ")[0]
    for alias in re.findall(r'AS "(\w+)"', outer):
        assert alias in columns, (alias, columns, query)
    if panel["type"] == "geomap":
        assert {"lat", "lon"} <= columns
        assert all(
            -90 <= row[series[0]["columns"].index("lat")] <= 90 for row in series[0]["values"]
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_variable_queries_offer_the_simulated_fleet(path: Path, filled: FilledDatabase) -> None:
    dashboard = load(path)
    chosen = _variables(dashboard, filled, *_range(dashboard, filled))
    if "device" in chosen:
        assert {"sw-01", "sw-02", "sw-03", "sw-04", "hh-01", "hh-02", "hh-03"} <= set(
            chosen["device"].options
        )
    assert set(chosen["kind"].options) == {"segway", "handheld"}


def test_an_unknown_field_fails_the_identifier_check(known_identifiers: set[str]) -> None:
    query = 'SELECT last("battery_pct") AS "x" FROM "battery"'
    unknown = set(re.findall(r'"(\w+)"', query)) - known_identifiers - {"x"}
    assert unknown == {"battery_pct"}
