"""Panel builders: one per visualisation the dashboards use, each with this project's
conventions (datasource, colours, legends, reduce calcs) so that every dashboard looks alike."""

from __future__ import annotations

from gen.common import DS, GREEN, target
from gen.model import (
    BarGaugeOptions,
    BigValueColorMode,
    BigValueGraphMode,
    FieldDefaults,
    GeomapOptions,
    MapLayer,
    MapLayerType,
    Override,
    PanelBody,
    PanelOptions,
    PanelType,
    Property,
    ReduceOptions,
    SortBy,
    StatOptions,
    TableOptions,
    Target,
    TimeseriesOptions,
    Transformation,
    ValueMapping,
)

# The states a device reports (status.state), their colour and their order in legends.
STATES = {
    "riding": ("green", 0),
    "idle": ("text", 1),
    "charging": ("blue", 2),
    "docked": ("purple", 3),
    "fault": ("red", 4),
    "off": ("dark-gray", 5),
}


def panel(
    kind: PanelType,
    title: str,
    description: str,
    targets: list[Target],
    *,
    unit: str,
    options: PanelOptions,
    defaults: FieldDefaults | None = None,
    overrides: list[Override] | None = None,
    transformations: list[Transformation] | None = None,
    interval: str = "",
) -> PanelBody:
    fd: FieldDefaults = {
        "unit": unit,
        "thresholds": GREEN,
        "mappings": [],
        "color": {"mode": "thresholds"},
    }
    fd.update(defaults or {})
    p: PanelBody = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": fd, "overrides": overrides or []},
        "options": options,
    }
    if transformations:
        p["transformations"] = transformations
    if interval:
        p["interval"] = interval
    return p


def reduce(calcs: list[str] | None = None, values: bool = False) -> ReduceOptions:
    return {"values": values, "calcs": calcs or ["lastNotNull"], "fields": ""}


def stat(
    title: str,
    description: str,
    query: str,
    unit: str,
    *,
    color_mode: BigValueColorMode = "value",
    graph_mode: BigValueGraphMode = "none",
    defaults: FieldDefaults | None = None,
    alias: str = "",
) -> PanelBody:
    options: StatOptions = {
        "reduceOptions": reduce(),
        "colorMode": color_mode,
        "graphMode": graph_mode,
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "orientation": "auto",
    }
    # A count over no matching device is no series at all: show 0, not "No data".
    merged: FieldDefaults = {"noValue": "0"}
    merged.update(defaults or {})
    return panel(
        "stat",
        title,
        description,
        [target(query, alias=alias)],
        unit=unit,
        options=options,
        defaults=merged,
    )


def timeseries(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    bars: bool = False,
    defaults: FieldDefaults | None = None,
    overrides: list[Override] | None = None,
    interval: str = "",
) -> PanelBody:
    options: TimeseriesOptions = {
        "legend": {
            "showLegend": True,
            "displayMode": "table",
            "placement": "right",
            "calcs": ["lastNotNull", "min", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    # A caller's "custom" replaces this one whole (points, steps): it is not merged.
    merged: FieldDefaults = {
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else 10,
            "showPoints": "never",
            "spanNulls": 3_600_000,  # bridge gaps up to an hour, not a device's night off
            "axisSoftMin": 0 if unit in ("percent", "lengthkm") else None,
            "stacking": {"mode": "none", "group": "A"},
        },
        "color": {"mode": "palette-classic"},
    }
    merged.update(defaults or {})
    return panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=merged,
        overrides=overrides,
        interval=interval,
    )


def table(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    sort_by: list[SortBy] | None = None,
    overrides: list[Override] | None = None,
    transformations: list[Transformation] | None = None,
) -> PanelBody:
    options: TableOptions = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "countRows": False},
        "sortBy": sort_by or [],
    }
    return panel(
        "table",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        overrides=overrides,
        transformations=transformations,
    )


def bargauge(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    values: bool = False,
    defaults: FieldDefaults | None = None,
    transformations: list[Transformation] | None = None,
) -> PanelBody:
    options: BarGaugeOptions = {
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
        "reduceOptions": reduce(values=values),
    }
    return panel(
        "bargauge",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=defaults,
        transformations=transformations,
    )


def geomap(
    title: str, description: str, targets: list[Target], layer: MapLayer, *, measure: bool
) -> PanelBody:
    """A map fitted to one layer whose points come from the query's "lat" and "lon" columns."""
    options: GeomapOptions = {
        "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 14, "allLayers": True},
        "controls": {
            "showZoom": True,
            "mouseWheelZoom": True,
            "showAttribution": True,
            "showScale": True,
            "showMeasure": measure,
            "showDebug": False,
        },
        "basemap": {"type": "default", "name": "Basemap", "config": {}},
        "layers": [layer],
        "tooltip": {"mode": "details"},
    }
    return panel(
        "geomap",
        title,
        description,
        targets,
        unit="none",
        options=options,
        # coordinates are not quantities: no unit scaling (1.2K) in the tooltip
        overrides=[unit_override("lat", "none"), unit_override("lon", "none")],
    )


def coords_layer(kind: MapLayerType, name: str, config: dict[str, object]) -> MapLayer:
    return {
        "type": kind,
        "name": name,
        "tooltip": True,
        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
        "config": config,
    }


def state_timeline(title: str, description: str, targets: list[Target]) -> PanelBody:
    return panel(
        "state-timeline",
        title,
        description,
        targets,
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
    )


def by_name(field: str, *properties: Property) -> Override:
    return {"matcher": {"id": "byName", "options": field}, "properties": list(properties)}


def unit_override(field: str, unit: str, name: str = "") -> Override:
    props: list[Property] = [{"id": "unit", "value": unit}]
    if name:
        props.append({"id": "displayName", "value": name})
    return by_name(field, *props)


def state_mappings() -> list[ValueMapping]:
    return [
        {
            "type": "value",
            "options": {s: {"color": c, "index": i, "text": s} for s, (c, i) in STATES.items()},
        }
    ]
