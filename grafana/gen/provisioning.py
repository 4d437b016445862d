"""The provisioning files: the datasource the dashboards name by uid, the dashboard provider,
and the optional Grafana-managed low-battery rule. Written from the same constants as the
dashboards, so the uid, folder and path cannot drift apart."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from gen.common import DATASOURCE_UID
from gen.yamltext import Flow, document

FOLDER = "Fleet"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/fleet"
LOW_BATTERY_PCT = 25


class InfluxJsonData(TypedDict):
    version: Literal["InfluxQL", "Flux", "SQL"]
    dbName: str
    httpMode: Literal["GET", "POST"]
    timeInterval: str


class Datasource(TypedDict):
    name: str
    uid: str
    type: str
    access: Literal["proxy", "direct"]
    url: str
    user: str
    isDefault: bool
    editable: bool
    jsonData: InfluxJsonData
    secureJsonData: dict[str, str]


class DatasourceFile(TypedDict):
    apiVersion: int
    prune: bool
    datasources: list[Datasource]


class ProviderOptions(TypedDict):
    path: str
    foldersFromFilesStructure: bool


class Provider(TypedDict):
    name: str
    orgId: int
    type: Literal["file"]
    folder: str
    folderUid: str
    disableDeletion: bool
    allowUiUpdates: bool
    updateIntervalSeconds: int
    options: ProviderOptions


class ProviderFile(TypedDict):
    apiVersion: int
    providers: list[Provider]


class AlertQuery(TypedDict):
    refId: str
    datasourceUid: str
    relativeTimeRange: NotRequired[Flow]
    model: dict[str, object]  # a query model of the datasource or expression named above


# `for` is a Python keyword: the functional form takes it as a key.
AlertRule = TypedDict(
    "AlertRule",
    {
        "uid": str,
        "title": str,
        "condition": str,
        "for": str,
        "noDataState": Literal["OK", "NoData", "Alerting"],
        "execErrState": Literal["OK", "Error", "Alerting"],
        "isPaused": bool,
        "labels": dict[str, str],
        "annotations": dict[str, str],
        "data": list[AlertQuery],
    },
)


class AlertGroup(TypedDict):
    orgId: int
    name: str
    folder: str
    interval: str
    rules: list[AlertRule]


class AlertingFile(TypedDict):
    apiVersion: int
    groups: list[AlertGroup]


def datasource() -> DatasourceFile:
    # Credentials are Grafana's environment, interpolated at provisioning time: never in a file.
    return {
        "apiVersion": 1,
        "prune": True,
        "datasources": [
            {
                "name": "Fleet (InfluxDB)",
                "uid": DATASOURCE_UID,
                "type": "influxdb",
                "access": "proxy",
                "url": "${FLEET_INFLUX_URL}",
                "user": "${FLEET_INFLUX_USER}",
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "version": "InfluxQL",
                    "dbName": "${FLEET_INFLUX_DB}",
                    "httpMode": "POST",
                    "timeInterval": "10s",
                },
                "secureJsonData": {"password": "${FLEET_INFLUX_PASSWORD}"},
            }
        ],
    }


def dashboards() -> ProviderFile:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "fleet",
                "orgId": 1,
                "type": "file",
                "folder": FOLDER,
                "folderUid": "fleet",
                "disableDeletion": False,
                "allowUiUpdates": False,  # the generator is the source, not the UI
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }


def low_battery() -> AlertingFile:
    query = (
        'SELECT last("pct") FROM "battery" WHERE "charging" = false AND $timeFilter '
        'GROUP BY "device"'
    )
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "fleet-battery",
                "folder": FOLDER,
                "interval": "1m",
                "rules": [
                    {
                        "uid": "fleet-low-battery",
                        "title": "Low battery",
                        "condition": "C",
                        "for": "2m",
                        "noDataState": "OK",  # a silent device is the offline alert's job
                        "execErrState": "Error",
                        "isPaused": False,
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Device {{ $labels.device }} battery at {{ $values.B }} %"
                        },
                        "data": [
                            {
                                "refId": "A",
                                "datasourceUid": DATASOURCE_UID,
                                "relativeTimeRange": Flow({"from": 900, "to": 0}),
                                "model": {
                                    "refId": "A",
                                    "rawQuery": True,
                                    "resultFormat": "time_series",
                                    "query": query,
                                    "intervalMs": 1000,
                                    "maxDataPoints": 43200,
                                },
                            },
                            {
                                "refId": "B",
                                "datasourceUid": "__expr__",
                                "model": {
                                    "refId": "B",
                                    "type": "reduce",
                                    "expression": "A",
                                    "reducer": "last",
                                    "settings": Flow({"mode": "dropNN"}),
                                },
                            },
                            {
                                "refId": "C",
                                "datasourceUid": "__expr__",
                                "model": {
                                    "refId": "C",
                                    "type": "threshold",
                                    "expression": "B",
                                    "conditions": [
                                        {
                                            "evaluator": Flow(
                                                {"type": "lt", "params": [LOW_BATTERY_PCT]}
                                            )
                                        }
                                    ],
                                },
                            },
                        ],
                    }
                ],
            }
        ],
    }


DATASOURCE_COMMENT = """\
InfluxDB 1.x (InfluxQL, database user/password). Every dashboard references uid fleet-influxdb.
Variants for 2.x (DBRP, token) and 3.x Core: see grafana/README.md; keep the same uid."""
DASHBOARDS_COMMENT = """\
Loads grafana/dashboards/*.json into the folder "Fleet". Copy or mount that directory at
the path below (or change it)."""
ALERTING_COMMENT = """\
Optional: a Grafana-managed low-battery rule for those who prefer Grafana alerting to the
collector's own alerts (README "Alerts"). Fires per device whose last charge is below 25 %."""


def files() -> dict[str, str]:
    """Each provisioning file's text by its path under grafana/provisioning/."""
    return {
        "datasources/fleet-influxdb.yaml": document(DATASOURCE_COMMENT, datasource()),
        "dashboards/fleet.yaml": document(DASHBOARDS_COMMENT, dashboards()),
        "alerting/low-battery.yaml": document(ALERTING_COMMENT, low_battery()),
    }
