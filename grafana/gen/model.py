"""The shapes of the dashboard JSON this generator writes, as TypedDicts.

Only the keys these dashboards use are declared (Grafana's schema has hundreds more). A
TypedDict is a plain dict at run time, so `json.dumps` writes the keys in the order the
builders put them: that order is part of the committed files, which a test compares byte for
byte (tests/grafana/test_generate_reproduces.py).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

ResultFormat = Literal["time_series", "table"]
BigValueColorMode = Literal["value", "background", "none"]
BigValueGraphMode = Literal["none", "area"]
MapLayerType = Literal["markers", "route"]
PanelType = Literal["stat", "timeseries", "table", "bargauge", "geomap", "state-timeline"]


class DataSourceRef(TypedDict):
    type: str
    uid: str


class Target(TypedDict):
    """One InfluxQL query: raw text, as no Grafana builder for InfluxQL exists."""

    refId: str
    datasource: DataSourceRef
    rawQuery: bool
    resultFormat: ResultFormat
    query: str
    alias: NotRequired[str]


class Step(TypedDict):
    color: str
    value: float | None


class Thresholds(TypedDict):
    mode: Literal["absolute", "percentage"]
    steps: list[Step]


class ColorMode(TypedDict):
    mode: Literal["thresholds", "palette-classic"]


class MappedValue(TypedDict):
    color: str
    index: int
    text: str


class ValueMapping(TypedDict):
    type: Literal["value"]
    options: dict[str, MappedValue]


class Stacking(TypedDict):
    mode: Literal["none", "normal"]
    group: str


class ThresholdsStyle(TypedDict):
    mode: Literal["off", "line", "area"]


class GraphStyle(TypedDict, total=False):
    """fieldConfig.defaults.custom of a time series."""

    drawStyle: Literal["line", "bars", "points"]
    lineWidth: int
    lineInterpolation: Literal["linear", "smooth", "stepBefore", "stepAfter"]
    fillOpacity: int
    pointSize: int
    showPoints: Literal["auto", "never", "always"]
    spanNulls: bool | int
    axisSoftMin: int | None
    stacking: Stacking
    thresholdsStyle: ThresholdsStyle


class FieldDefaults(TypedDict, total=False):
    unit: str
    thresholds: Thresholds
    mappings: list[ValueMapping]
    color: ColorMode
    custom: GraphStyle
    noValue: str
    min: float
    max: float
    decimals: int
    displayName: str


class CellOptions(TypedDict, total=False):
    type: Literal["gauge", "color-text", "color-background"]
    mode: Literal["basic", "gradient", "lcd"]


PropertyValue = str | float | Thresholds | list[ValueMapping] | CellOptions


class Property(TypedDict):
    id: str
    value: PropertyValue


class Matcher(TypedDict):
    id: Literal["byName"]
    options: str


class Override(TypedDict):
    matcher: Matcher
    properties: list[Property]


class FieldConfig(TypedDict):
    defaults: FieldDefaults
    overrides: list[Override]


class Transformation(TypedDict):
    """Options differ per transformation id (merge, organize, sortBy, calculateField) and
    Grafana nests them freely, so they stay loosely typed here."""

    id: Literal["merge", "organize", "sortBy", "calculateField"]
    options: dict[str, object]


class ReduceOptions(TypedDict):
    values: bool
    calcs: list[str]
    fields: str


class Legend(TypedDict):
    showLegend: bool
    displayMode: Literal["list", "table"]
    placement: Literal["bottom", "right"]
    calcs: NotRequired[list[str]]


class Tooltip(TypedDict):
    mode: Literal["single", "multi"]
    sort: Literal["none", "asc", "desc"]


class StatOptions(TypedDict):
    reduceOptions: ReduceOptions
    colorMode: BigValueColorMode
    graphMode: BigValueGraphMode
    justifyMode: Literal["auto"]
    textMode: Literal["auto"]
    wideLayout: bool
    showPercentChange: bool
    orientation: Literal["auto"]


class TimeseriesOptions(TypedDict):
    legend: Legend
    tooltip: Tooltip


class SortBy(TypedDict):
    displayName: str
    desc: bool


class Footer(TypedDict):
    show: bool
    reducer: list[str]
    countRows: bool


class TableOptions(TypedDict):
    showHeader: bool
    cellHeight: Literal["sm", "md", "lg"]
    footer: Footer
    sortBy: list[SortBy]


class BarGaugeOptions(TypedDict):
    orientation: Literal["horizontal", "vertical"]
    displayMode: Literal["gradient", "lcd", "basic"]
    valueMode: Literal["color", "text", "hidden"]
    namePlacement: Literal["auto", "top", "left"]
    showUnfilled: bool
    sizing: Literal["auto", "manual"]
    minVizWidth: int
    minVizHeight: int
    maxVizHeight: int
    legend: Legend
    reduceOptions: ReduceOptions


class MapView(TypedDict):
    id: Literal["fit", "zero", "coords"]
    lat: float
    lon: float
    zoom: int
    allLayers: bool


class MapControls(TypedDict):
    showZoom: bool
    mouseWheelZoom: bool
    showAttribution: bool
    showScale: bool
    showMeasure: bool
    showDebug: bool


class Basemap(TypedDict):
    type: Literal["default"]
    name: str
    config: dict[str, object]


class CoordsLocation(TypedDict):
    mode: Literal["coords"]
    latitude: str
    longitude: str


class MapLayer(TypedDict):
    type: MapLayerType
    name: str
    tooltip: bool
    location: CoordsLocation
    config: dict[str, object]  # the style tree differs per layer type


class MapTooltip(TypedDict):
    mode: Literal["details", "none"]


class GeomapOptions(TypedDict):
    view: MapView
    controls: MapControls
    basemap: Basemap
    layers: list[MapLayer]
    tooltip: MapTooltip


class StateTimelineOptions(TypedDict):
    showValue: Literal["auto", "always", "never"]
    rowHeight: float
    mergeValues: bool
    alignValue: Literal["left", "center", "right"]
    legend: Legend
    tooltip: Tooltip


PanelOptions = (
    StatOptions
    | TimeseriesOptions
    | TableOptions
    | BarGaugeOptions
    | GeomapOptions
    | StateTimelineOptions
)


class GridPos(TypedDict):
    h: int
    w: int
    x: int
    y: int


class PanelBody(TypedDict):
    """A panel as a builder makes it; the layout adds its id and place."""

    type: PanelType
    title: str
    description: str
    datasource: DataSourceRef
    targets: list[Target]
    fieldConfig: FieldConfig
    options: PanelOptions
    transformations: NotRequired[list[Transformation]]
    interval: NotRequired[str]


class Panel(PanelBody):
    id: int
    gridPos: GridPos


class Row(TypedDict):
    type: Literal["row"]
    id: int
    title: str
    collapsed: bool
    panels: list[Panel]
    gridPos: GridPos


class Variable(TypedDict):
    type: Literal["query"]
    name: str
    label: str
    datasource: DataSourceRef
    query: str
    definition: str
    refresh: int
    sort: int
    multi: bool
    includeAll: bool
    allValue: str | None
    current: dict[str, object]
    options: list[object]
    hide: int
    regex: str


class Dashboard(TypedDict):
    uid: str
    title: str
    description: str
    tags: list[str]
    timezone: str
    editable: bool
    graphTooltip: int
    schemaVersion: int
    version: int
    refresh: str
    time: dict[str, str]
    timepicker: dict[str, object]
    fiscalYearStartMonth: int
    liveNow: bool
    annotations: dict[str, list[dict[str, object]]]
    links: list[dict[str, object]]
    templating: dict[str, list[Variable]]
    panels: list[Panel | Row]
