"""`nmea_gps` driver: an NMEA 0183 GPS receiver on a serial port, reporting as a fleet device.

The receiver (a handheld's GPS puck, a USB GNSS dongle) talks on its own; the
driver only listens. Valid fixes become Location readings of `device`, at most
one every `min_interval_s`. The device is online while sentences arrive and
goes offline after `offline_after_s` of silence or when the port fails (the
driver then raises so the agent reopens the port with backoff).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ClassVar

import serial_asyncio_fast

from fleet.drivers.base import DriverSink
from fleet.drivers.gps.config import NmeaGpsConfig
from fleet.drivers.gps.decode import Fix, NmeaDecoder
from fleet.drivers.readings import Reading

_LOG = logging.getLogger(__name__)

_READ_SIZE = 1024
# Bad-line counters are logged at most this often, so a noisy line cannot flood the log.
_STATS_LOG_INTERVAL_S = 60.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class NmeaGps:
    """Reads one receiver; see the module docstring."""

    kind: ClassVar[str] = "nmea_gps"

    def __init__(self, config: NmeaGpsConfig, *, clock: Callable[[], int] = _wall_ms) -> None:
        self._config = config
        self._clock = clock
        self.decoder = NmeaDecoder()
        self._online = False
        self._last_emit: float | None = None
        self._stats_logged_at = 0.0
        self._stats_logged: tuple[int, int] = (0, 0)

    async def run(self, sink: DriverSink) -> None:
        cfg = self._config
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=cfg.port, baudrate=cfg.baudrate
            )
        except OSError as exc:
            self._set_online(sink, False, f"cannot open {cfg.port}: {exc}")
            raise
        _LOG.info("GPS %s: listening on %s at %d baud", cfg.device, cfg.port, cfg.baudrate)
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                    # cancellation that races with a completed read.
                    async with asyncio.timeout(cfg.offline_after_s):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    self._set_online(sink, False, f"no NMEA data for {cfg.offline_after_s:g} s")
                    continue
                if not data:
                    raise ConnectionError(f"serial port {cfg.port} closed")
                before = self.decoder.stats.sentences
                for fix in self.decoder.feed(data):
                    self._emit(sink, fix)
                if self.decoder.stats.sentences > before:
                    self._set_online(sink, True, "NMEA sentences arriving")
                self._log_stats()
        except OSError as exc:
            self._set_online(sink, False, f"serial error on {cfg.port}: {exc}")
            raise
        finally:
            writer.close()
            self._set_online(sink, False, "driver stopped")

    def _emit(self, sink: DriverSink, fix: Fix) -> None:
        now = asyncio.get_running_loop().time()
        if self._last_emit is not None and now - self._last_emit < self._config.min_interval_s:
            return
        self._last_emit = now
        sink.reading(
            Reading(device=self._config.device, ts_ms=self._clock(), location=fix.location)
        )

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online:
            return
        self._online = online
        _LOG.info("GPS %s %s: %s", self._config.device, "online" if online else "offline", detail)
        sink.availability(self._config.device, online, detail)

    def _log_stats(self) -> None:
        stats = self.decoder.stats
        bad = (stats.checksum_errors, stats.garbage)
        now = time.monotonic()
        if bad == self._stats_logged or now - self._stats_logged_at < _STATS_LOG_INTERVAL_S:
            return
        self._stats_logged, self._stats_logged_at = bad, now
        _LOG.warning(
            "GPS %s: %d checksum errors, %d garbage lines skipped so far (%d good sentences)",
            self._config.device,
            stats.checksum_errors,
            stats.garbage,
            stats.sentences,
        )
