"""The collector's alert service on its own thread, as the collector runs it, for the fuzz runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet.config import FleetSettings, load_settings
from fleet.daemon import wire
from fleet.daemon.collector.alerting import AlertService
from fleet.daemon.spool import Spool
from tests.harness.waiting import wait_until

PREFIX, SITE = "fleet", "allingtown"
FIRING = ("sw-05", "battery_critical")


def settings(tmp_path: Path, extra: str = "") -> FleetSettings:
    """`extra`: whole TOML sections after [alerts] (a registry of devices and agents)."""
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[site]\nid = "{SITE}"\n\n[alerts]\nstate_path = "{tmp_path / "alerts.sqlite"}"\n{extra}'
    )
    return load_settings(path, environ={})


def low_battery(device: str) -> wire.DecodedReading:
    battery = wire.Battery(pct=3.0, charging=False)
    now = int(time.time() * 1000)
    return wire.DecodedReading(SITE, "segway", device, None, now, battery, None, None, "telemetry")


class AlertRig:
    def __init__(self, service: AlertService) -> None:
        self.service = service
        self.crashed: list[BaseException] = []

    def firing(self, device: str) -> bool:
        return any(a.device == device for a in self.service.engine.alerts(firing_only=True))

    def check_drained(self) -> None:
        """Everything queued before was handled once a sentinel reading's alert shows."""
        self.service.observe([low_battery("sw-sentinel")])
        wait_until(
            lambda: self.crashed or self.firing("sw-sentinel"),
            timeout=60,
            message="the alert thread handled everything queued",
        )
        assert not self.crashed, f"the alert thread died: {self.crashed[0]!r}"


@contextmanager
def alert_service(tmp_path: Path, extra: str = "") -> Iterator[AlertRig]:
    """A running AlertService with FIRING firing (so that acknowledgements have a target)."""
    service = AlertService(
        settings(tmp_path, extra),
        spool=Spool(tmp_path / "spool.sqlite", max_bytes=1 << 30, fsync=False),
        publish=lambda topic, payload, retain: None,
        on_spooled=lambda: None,
        clock_ms=lambda: int(time.time() * 1000),
    )
    rig = AlertRig(service)

    def run(stop: threading.Event) -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # the collector would restart the thread: a failure here
            rig.crashed.append(exc)
            raise

    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name="alerts", daemon=True)
    thread.start()
    try:
        service.observe([low_battery(FIRING[0])])
        wait_until(lambda: rig.firing(FIRING[0]), timeout=20, message="alert fired")
        yield rig
    finally:
        stop.set()
        thread.join(10)
