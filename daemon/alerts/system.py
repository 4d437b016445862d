"""Alerts about the fleet's own processes rather than a device: a state file found broken.

They look like any alert (same topic scheme, same JSON, retained) under the id of
the process that raised them - the collector's MQTT client id, the agent's id -
so the dashboards, the retained-topic readers and the people see them unchanged.
"""

from __future__ import annotations

import re

from fleet.config.alerts import Severity
from fleet.daemon import wire
from fleet.daemon.alerts.model import AlertSnapshot
from fleet.daemon.alerts.text import alert_json
from fleet.daemon.sqlite_files import Recovery

RULE = "state_file_corrupt"  # the rule name of the alert about a recovered state file


def alert_id(text: str) -> str:
    """`text` as an id the wire contract accepts (a client id may hold any character)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip("_.-")[:64]
    return cleaned or "unnamed"


def recovery_alert(
    recovery: Recovery, *, prefix: str, site: str, source: str, kind: str, now_ms: int
) -> tuple[str, bytes, AlertSnapshot]:
    """The retained alert about a recovered file: topic, payload, snapshot.

    Published under the id of the process that found it (the collector's client
    id, the agent's id) like any device's alert; critical, because the moved-aside
    file may hold data only a person can still get out of it.
    """
    device = alert_id(source)
    snapshot = AlertSnapshot(
        site=site,
        kind=kind,
        device=device,
        rule=RULE,
        severity=Severity.CRITICAL,
        state="firing",
        value=float(recovery.rows),
        since_ms=now_ms,
        acknowledged_by=None,
        message=f"{kind.capitalize()} {device}: {recovery.summary()}",
    )
    return wire.alert_topic(prefix, site, device, RULE), alert_json(snapshot), snapshot
