"""What the collector tells systemd: READY, a STATUS line, and the watchdog rule.

Watched parts and how long each may go without a turn (daemon/liveness.py):

    ingest  its loop wakes every 0.2 s even when idle, and every 0.5-1 s while it
            waits for room in the spool; STALL_S covers one batch on a slow disk
    writer  it waits on purpose up to the next flush or retry (write_backoff_max_s),
            and a write takes up to influx.timeout_s; STALL_S on top
    alerts  its loop wakes every second for the engine's tick

InfluxDB being away is not a reason to stop pinging: the writer keeps turning
(retrying) and the spool is there for that. A full spool or disk is not either:
ingest keeps turning while it waits, and a restart would not make room.

`READY=1` follows the MQTT connection; `CollectorSystemd.start()` is called once the
HTTP server serves, so READY means both. Without `$NOTIFY_SOCKET` nothing runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fleet.config import FleetSettings
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.collector.writer import Writer
from fleet.daemon.liveness import STALL_S, Health, Rate, ServiceNotifier, Watch, watched_thread
from fleet.daemon.mqtt import MqttLink
from fleet.daemon.sdnotify import SdNotify
from fleet.daemon.spool import Spool

Work = Callable[[threading.Event], None]


class CollectorSystemd:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        link: MqttLink,
        ingest: Ingest,
        writer: Writer,
        spool: Spool,
    ) -> None:
        self._settings = settings
        self._link = link
        self._ingest = ingest
        self._writer = writer
        self._spool = spool
        influx = settings.influx
        self.watch = Watch()
        self.watch.add("ingest", STALL_S)
        waits = max(influx.flush_interval_s, influx.write_backoff_max_s)
        self.watch.add("writer", STALL_S + influx.timeout_s + waits)
        if settings.alerts.enabled:
            self.watch.add("alerts", STALL_S)
        self._rate = Rate()
        self.notifier: ServiceNotifier | None = None  # while it runs under systemd

    def part(self, name: str, work: Work) -> Work:
        """`work` with its heart bound, if `name` is watched."""
        heart = self.watch.hearts.get(name)
        return work if heart is None else watched_thread(heart, work)

    def start(self, sd: SdNotify | None = None) -> Callable[[], None]:
        sd = SdNotify() if sd is None else sd
        if not sd.enabled:
            return lambda: None
        self.notifier = ServiceNotifier(
            sd,
            self.watch,
            connected=lambda: self._link.connected,
            status=self.status,
            starting=self._starting,
            stopping="stopping: writing what it can of the spool to InfluxDB",
        )
        return self.notifier.start()

    def _starting(self) -> str:
        mqtt = self._settings.mqtt
        return f"starting: connecting to MQTT broker {mqtt.host}:{mqtt.port}"

    def status(self, health: Health) -> str:
        """e.g. '412 msg/s, spool 0 points, InfluxDB ok, MQTT connected'; what fails first."""
        problems = health.problems()
        failing = self._writer.failing_for_s
        if failing is not None:
            problems.append(f"InfluxDB failing for {failing:.0f} s")
        spool_failing = self._ingest.commit_failing_for_s
        if spool_failing is not None:
            problems.append(
                f"spool refusing readings for {spool_failing:.0f} s ({self._ingest.commit_error})"
            )
        rate = self._rate.per_s(self._ingest.counters.received)
        figures = [f"{rate:,.0f} msg/s", f"spool {self._spool.depth().points:,} points"]
        if failing is None:
            figures.append("InfluxDB ok")
        if health.connected:
            figures.append("MQTT connected")
        return "; ".join([*problems, ", ".join(figures)])
