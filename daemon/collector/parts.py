"""What the collector's web side and /metrics read of a running collector, as a Protocol.

`app.Collector` satisfies it; the web side and the metrics depend on this instead of on
`app`, which assembles them (so no import goes both ways).
"""

from __future__ import annotations

from typing import Any, Protocol

from fleet.config import FleetSettings
from fleet.daemon.collector.alerting import AlertService
from fleet.daemon.collector.backfill import RollupBackfill
from fleet.daemon.collector.deadletters import DeadLetterStore
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.collector.stats import StatsReporter
from fleet.daemon.collector.writer import Writer
from fleet.daemon.mqtt import MqttLink
from fleet.daemon.spool import Spool
from fleet.daemon.sqlite_files import Recovery


class CollectorParts(Protocol):
    settings: FleetSettings
    spool: Spool
    writer: Writer
    ingest: Ingest
    stats: StatsReporter
    deadletters: DeadLetterStore
    link: MqttLink
    alerts: AlertService | None
    backfill: RollupBackfill | None  # the roll-up's late hours (InfluxDB 1.x with a roll-up)
    session_lost: int  # persistent MQTT sessions the broker no longer had
    recoveries: list[Recovery]  # state files found broken at start and replaced

    def health(self) -> tuple[bool, dict[str, Any]]: ...
