"""Loading the provisioned dashboards and walking their panels, targets and variables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "fleet-influxdb"

Json = dict[str, Any]


def load(path: Path) -> Json:
    result: Json = json.loads(path.read_text(encoding="utf-8"))
    return result


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: Json) -> Iterator[tuple[Json, Json]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: Json) -> list[Json]:
    found: list[Json] = dashboard["templating"]["list"]
    return found
