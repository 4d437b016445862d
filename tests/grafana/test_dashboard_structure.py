"""Structure of the provisioning files and dashboards, checked without a Grafana: what
Grafana needs to load them unchanged (schema, ids, grid, datasource uid) and what makes them
readable (units, reduce calcs, titles), plus the macro renderer the query tests rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fleet.daemon.wire import Reason
from tests.grafana.dashboards import (
    DASHBOARDS,
    DATASOURCE_UID,
    REPO,
    load,
    panels,
    targets,
    variables,
)
from tests.grafana.render import Variable, auto_interval_ms, render

PANEL_TYPES = {
    "stat",
    "gauge",
    "bargauge",
    "timeseries",
    "table",
    "geomap",
    "state-timeline",
    "row",
}
IDS = [p.stem for p in DASHBOARDS]


def test_there_are_four_dashboards_with_unique_uids_and_titles() -> None:
    dashboards = [load(p) for p in DASHBOARDS]
    assert len(dashboards) == 4
    assert len({d["uid"] for d in dashboards}) == 4
    assert len({d["title"] for d in dashboards}) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]) for d in dashboards)


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_dashboard_model(path: Path) -> None:
    d = load(path)
    assert d["schemaVersion"] == 41
    assert d.get("id") is None
    for key in ("templating", "annotations", "time", "title", "panels"):
        assert key in d
    text = path.read_text(encoding="utf-8")
    for placeholder in ("__inputs", "__requires", "${DS_", "TODO", "FIXME"):
        assert placeholder not in text


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_panels_ids_and_grid(path: Path) -> None:
    d = load(path)
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)
    cells: dict[tuple[int, int], int] = {}
    for p in panels(d):
        assert p["type"] in PANEL_TYPES, p["type"]
        assert p.get("title")
        g = p["gridPos"]
        assert g["x"] >= 0
        assert g["w"] > 0
        assert g["h"] > 0
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['id']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_datasource_units_and_calcs(path: Path) -> None:
    d = load(path)
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        assert p["targets"], p["title"]
        defaults = p["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{p['title']}: no unit"
        for override in p["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"]
        if p["type"] in ("stat", "gauge", "bargauge"):
            assert p["options"]["reduceOptions"]["calcs"], p["title"]
    for _, t in targets(d):
        assert t["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        assert t["rawQuery"] is True
        assert "$timeFilter" in t["query"], t["query"]
        assert "SLIMIT" not in t["query"]
        assert "SHOW SERIES" not in t["query"]
    for v in variables(d):
        assert v["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        assert v["refresh"] == 2


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_multi_value_variables_are_matched_as_regex(path: Path) -> None:
    d = load(path)
    names = {v["name"] for v in variables(d) if v["multi"] or v["includeAll"]}
    queries = [t["query"] for _, t in targets(d)] + [v["query"] for v in variables(d)]
    for q in queries:
        for name in re.findall(r"\$(\w+)", q):
            if name in names:
                assert f"/^${name}$/" in q, (name, q)


def test_long_range_panels_read_the_rollup() -> None:
    d = load(REPO / "grafana" / "dashboards" / "battery-health.json")
    rollup = [p["title"] for p, t in targets(d) if '"rp_1h".' in t["query"]]
    assert {"Health over time", "Ranked by degradation", "Daily charge range"} <= set(rollup)


def test_dead_letter_panel_counts_every_reason_the_collector_has() -> None:
    # The generator copies the reasons (it does not import the daemon): a reason added to the
    # collector without its counter on the panel would go unseen.
    d = load(REPO / "grafana" / "dashboards" / "pipeline.json")
    (query,) = [t["query"] for p, t in targets(d) if p["title"] == "Dead letters by reason"]
    assert set(re.findall(r'"rejected_(\w+)"', query)) == {str(r) for r in Reason}


def test_provisioning_files() -> None:
    base = REPO / "grafana" / "provisioning"
    ds = yaml.safe_load((base / "datasources" / "fleet-influxdb.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["secureJsonData"]["password"].startswith("${")  # from the environment
    providers = yaml.safe_load((base / "dashboards" / "fleet.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file"
    alerting = yaml.safe_load((base / "alerting" / "low-battery.yaml").read_text())
    rule = alerting["groups"][0]["rules"][0]
    refs = {step["refId"] for step in rule["data"]}
    assert rule["condition"] in refs
    assert rule["data"][0]["datasourceUid"] == DATASOURCE_UID


# --- the renderer -----------------------------------------------------------------------


def test_time_filter_interval_and_range() -> None:
    q = "SELECT mean(x) FROM m WHERE $timeFilter GROUP BY time($__interval) -- $__interval_ms $__from $__to"
    out = render(q, from_ms=0, to_ms=86_400_000, max_data_points=1000)
    assert out == (
        "SELECT mean(x) FROM m WHERE time >= 0ms and time <= 86400000ms GROUP BY time(1m) "
        "-- 60000 0 86400000"
    )
    assert auto_interval_ms(0, 3_600_000, 1000, "10s") == 10_000  # the minimum wins
    assert auto_interval_ms(0, 7 * 86_400_000, 1000, "1h") == 3_600_000


def test_variables_render_like_grafana() -> None:
    single = Variable("device", ["sw-01"])
    multi = Variable("site", ["a.b", "c"], ["a.b", "c", "d"], multi=True, include_all=True)
    every = Variable("kind", ["$__all"], ["x", "y"], multi=True, include_all=True, all_value=".*")
    every_no_all_value = Variable("k2", ["$__all"], ["x", "y"], multi=True, include_all=True)
    vs = {v.name: v for v in (single, multi, every, every_no_all_value)}
    q = "/^$device$/ /^${site}$/ [[kind]] /^$k2$/"
    assert render(q, from_ms=0, to_ms=1, variables=vs) == r"/^sw-01$/ /^(a\.b|c)$/ .* /^(x|y)$/"
    with pytest.raises(KeyError):
        render("$nope", from_ms=0, to_ms=1)
