"""Every panel with two sites: chosen one at a time, each panel shows that site's data only;
with All, both sites' (issue 12, item 5).

The simulated day of `conftest.filled` splits the fleet over two sites (`fleet simulate`
alternates its generated devices between the configured site and the other West Haven
site); which device is where comes from the simulator's own plan, not from InfluxDB. For
every panel query of every dashboard, the site variable is set to each site and to All,
the other variables chained from their own queries as Grafana does, and the query run:

- series tagged with a site or a device belong to the chosen site; with All, to both;
- a single answer across devices (a count, a mean, a day's range) is split by the site:
  counts add up to All's, any other value of All lies between the two sites' values;
- a site nobody has gives no data at all: no panel reads past the site filter;
- the collector's own panels (pipeline, no device) are the collectors', the same whatever
  site is chosen (a collector may own several sites; several may share `site.id`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.simulate.fleet import plan_fleet
from tests.grafana.conftest import FilledDatabase
from tests.grafana.dashboards import DASHBOARDS, Json, load, targets, variables
from tests.grafana.render import Variable, render

# As conftest._simulate runs it (--segways 4 --handhelds 3, site.id allingtown).
PLAN = plan_fleet(segways=4, handhelds=3, first_site="allingtown")
SITES: dict[str, set[str]] = {}
for _member in PLAN:
    SITES.setdefault(_member.site, set()).add(_member.device)
ALL = "$__all"
NOWHERE = "nosuchsite"
# Panels of the collector itself: not a site's, the same for every choice of site.
COLLECTOR_PANELS = {
    "Dead letters by reason",
    "Spool depth",
    "Write latency",
    "Collector uptime",
    "Messages received",
    "Collector availability",
}
# Counts of devices (or alerts) in a state: a site may have none (Grafana shows 0).
COUNTS = {"Ready (≥ 50 %)", "Low (< 25 %)", "Charging", "Offline (silent > 10 min)", "Open alerts"}
# The collector's `offline` alert needs 10 minutes of wall-clock silence, which a backfilled
# day cannot produce (as in test_dashboard_queries).
NEVER_IN_A_BACKFILLED_DAY = {"Offline (silent > 10 min)"}
# In the simulated day every other panel has data for each site (see conftest.FAULTS: a
# faulty, a low, an unplugged and a flapping device, spread over both sites).
MAY_BE_EMPTY = NEVER_IN_A_BACKFILLED_DAY


def test_the_simulated_day_has_two_sites() -> None:
    assert sorted(SITES) == ["allingtown", "westhaven"]
    assert all(len(devices) >= 3 for devices in SITES.values())


def _series(filled: FilledDatabase, query: str) -> list[dict[str, Any]]:
    result = filled.influx.query(query, filled.database)
    errors = [r["error"] for r in result["results"] if "error" in r]
    assert not errors, (errors, query)
    return [s for r in result["results"] for s in r.get("series", [])]


def _range(dashboard: Json, filled: FilledDatabase) -> tuple[int, int]:
    days = {"now-24h": 1, "now-7d": 7}[dashboard["time"]["from"]]
    return filled.end_ms - days * 86_400_000, filled.end_ms


def _choose(
    dashboard: Json, filled: FilledDatabase, site: str, from_ms: int, to_ms: int
) -> dict[str, Variable]:
    """`site` (or All) chosen; the others from their own queries, chained: All where the
    variable has it, else (a single device) the chosen site's first Segway."""
    chosen: dict[str, Variable] = {}
    for var in variables(dashboard):
        query = render(var["query"], from_ms=from_ms, to_ms=to_ms, variables=chosen)
        options = [r["value"] for r in filled.influx.rows(query, filled.database)]
        if var["name"] == "site":
            selection = [site]
        elif var["includeAll"]:
            selection = [ALL]
        else:
            selection = [next((o for o in options if o.startswith("sw-")), "")]
        chosen[var["name"]] = Variable(
            var["name"], selection, options, var["multi"], var["includeAll"], var["allValue"]
        )
    return chosen


def _run(path: Path, panel_id: int, ref: str, filled: FilledDatabase, site: str) -> Any:
    dashboard = load(path)
    panel, target = next(
        (p, t) for p, t in targets(dashboard) if p["id"] == panel_id and t["refId"] == ref
    )
    from_ms, to_ms = _range(dashboard, filled)
    chosen = _choose(dashboard, filled, site, from_ms, to_ms)
    query = render(
        target["query"],
        from_ms=from_ms,
        to_ms=to_ms,
        variables=chosen,
        min_interval=panel.get("interval", "10s"),
    )
    return panel, chosen, query, _series(filled, query)


def _cases() -> list[Any]:
    return [
        pytest.param(
            path, panel["id"], target["refId"], id=f"{path.stem}:{panel['title']}:{target['refId']}"
        )
        for path in DASHBOARDS
        for panel, target in targets(load(path))
    ]


def _owner(series: dict[str, Any]) -> set[str]:
    """The sites a series is tagged with (by its site, or by its device's site)."""
    tags = series.get("tags") or {}
    if "site" in tags:
        return {tags["site"]}
    if "device" in tags:
        return {s for s, devices in SITES.items() if tags["device"] in devices}
    return set()


def _values(series: Sequence[dict[str, Any]]) -> dict[tuple[Any, str], float]:
    """(time, column) -> number of the untagged answer (one series)."""
    out: dict[tuple[Any, str], float] = {}
    for s in series:
        columns = s["columns"]
        for row in s["values"]:
            for name, value in zip(columns[1:], row[1:], strict=True):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[(row[0], name)] = float(value)
    return out


@pytest.mark.parametrize(("path", "panel_id", "ref"), _cases())
def test_each_panel_shows_the_chosen_site_only_and_both_for_all(
    path: Path, panel_id: int, ref: str, filled: FilledDatabase
) -> None:
    answers = {site: _run(path, panel_id, ref, filled, site) for site in [*SITES, ALL]}
    panel = answers[ALL][0]
    title = panel["title"]
    if title in COLLECTOR_PANELS:
        queries = {query for _, _, query, _ in answers.values()}
        assert len(queries) == 1, f"{title}: the collector's panel depends on the site"
        assert answers[ALL][3], f"{title}: no data"
        return
    if "device" in answers[ALL][1] and not answers[ALL][1]["device"].include_all:
        # One device at a time (device detail): the chooser offers the site's devices, and
        # the panel shows the chosen device, which is the site's.
        for site, (_, chosen, _query, _found) in answers.items():
            offered = set(chosen["device"].options)
            assert offered == (set().union(*SITES.values()) if site == ALL else SITES[site])
            assert chosen["device"].values[0] in offered
        return

    for site in SITES:
        _, _, query, series = answers[site]
        assert series or title in MAY_BE_EMPTY, f"{title} shows nothing for {site}: {query}"
        for s in series:
            owner = _owner(s)
            assert not owner or owner == {site}, f"{title} for {site} shows {s.get('tags')}"
    _, _, query, series = answers[ALL]
    if title in NEVER_IN_A_BACKFILLED_DAY and not series:
        return
    assert series, f"{title} shows nothing for All: {query}"
    tagged = set().union(*(_owner(s) for s in series))
    if tagged:
        split = {s for s in SITES if answers[s][3]}
        assert tagged == split, f"{title} for All shows sites {tagged}, the sites alone {split}"
        assert len(split) == 2 or title in MAY_BE_EMPTY, title
    else:
        whole = _values(series)
        parts = [_values(answers[s][3]) for s in SITES]
        assert whole, f"{title}: no number in {series}"
        for key, value in whole.items():
            found = [p[key] for p in parts if key in p]
            if title in COUNTS:
                assert value == sum(found), (title, key, value, found)
            else:
                assert found, (title, key)
                assert min(found) - 1e-6 <= value <= max(found) + 1e-6, (title, key, found)

    nowhere = _run(path, panel_id, ref, filled, NOWHERE)
    assert nowhere[3] == [], f"{title} shows data for a site nobody has: {nowhere[2]}"


def test_no_value_is_lost_or_invented_by_the_split(filled: FilledDatabase) -> None:
    """Readings per site add up to the whole (the tag filter loses no device)."""
    counts = {
        site: _series(
            filled,
            f'SELECT count("pct") FROM "battery" WHERE "site" =~ /^{site}$/ '
            f"AND time >= {filled.start_ms}ms",
        )[0]["values"][0][1]
        for site in SITES
    }
    (whole,) = _series(
        filled, f'SELECT count("pct") FROM "battery" WHERE time >= {filled.start_ms}ms'
    )
    assert math.isclose(sum(counts.values()), whole["values"][0][1])
    assert all(counts.values())
