"""`bthome` driver: battery, voltage and temperature from a device's BTHome v2 adverts.

Passive in the BTHome sense: no connection, the driver only listens to the
advertisements of `address` and decodes their 0xFCD2 service data. Every
advert seen (any device) feeds the agent's scanner watchdog. The device is
online while its adverts arrive and offline after `offline_after_s` without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ClassVar

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from fleet.drivers.base import DriverSink
from fleet.drivers.ble.config import BTHomeConfig
from fleet.drivers.ble.decode import BTHOME_SERVICE_DATA, BTHomeAdvert, decode_bthome
from fleet.drivers.ble.scanner import (
    BLUETOOTH_ERRORS,
    ScannerBackend,
    same_address,
    scanning,
)
from fleet.drivers.readings import Reading, Status, within

_LOG = logging.getLogger(__name__)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class BTHome:
    """Listens for one BTHome device; see the module docstring."""

    kind: ClassVar[str] = "bthome"

    def __init__(
        self,
        config: BTHomeConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        scanner_backend: ScannerBackend = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._backend = scanner_backend
        key = config.bind_key
        self._bindkey = None if key is None else bytes.fromhex(key.get_secret_value())
        self._state: tuple[bool, str] | None = None
        self._last_advert: float | None = None
        self._last_emit: float | None = None
        self._complaint: str | None = None
        self.readings = 0
        # Adverts of our device: refused (downgraded or undecryptable), or not decoded to
        # their end (`malformed`; the values before the fault still count).
        self.refused = 0
        self.malformed = 0

    async def run(self, sink: DriverSink) -> None:
        cfg = self._config
        loop = asyncio.get_running_loop()
        started = loop.time()

        def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
            sink.advert_seen()
            if not same_address(device.address, cfg.address):
                return
            payload = adv.service_data.get(BTHOME_SERVICE_DATA)
            if payload is None:
                return
            self._last_advert = loop.time()
            self._handle(
                sink, decode_bthome(payload, cfg.address, bindkey=self._bindkey, rssi=adv.rssi)
            )

        try:
            async with scanning(on_advert, backend=self._backend):
                _LOG.info("BTHome %s: listening for %s", cfg.device, cfg.address)
                while True:
                    await asyncio.sleep(min(1.0, cfg.offline_after_s / 4))
                    last = started if self._last_advert is None else self._last_advert
                    if loop.time() - last >= cfg.offline_after_s:
                        self._set_online(sink, False, f"no advert for {cfg.offline_after_s:g} s")
        except BLUETOOTH_ERRORS as exc:
            self._set_online(sink, False, f"Bluetooth unavailable: {exc!r}")
            raise

    def _handle(self, sink: DriverSink, advert: BTHomeAdvert) -> None:
        cfg = self._config
        if advert.downgraded:
            self.refused += 1
            self._complain("plaintext advert although a bind_key is configured: ignored")
            return
        if advert.undecryptable:
            self.refused += 1
            why = (
                "no bind_key configured"
                if self._bindkey is None
                else "bind_key does not decrypt it"
            )
            self._complain(f"encrypted advert, {why}")
            # Reachable but unreadable: offline, with the reason, so the board shows it.
            self._set_online(sink, False, f"encrypted BTHome adverts, {why}")
            return
        if advert.problem is None:
            self._complaint = None
        else:
            self.malformed += 1
            self._complain(f"advert not fully decoded: {advert.problem}")
        # Even a garbled advert shows the device is on the air.
        self._set_online(sink, True, "advertising")
        if advert.battery is None:
            return
        now = asyncio.get_running_loop().time()
        if self._last_emit is not None and now - self._last_emit < cfg.min_interval_s:
            return
        self._last_emit = now
        self.readings += 1
        rssi = within("rssi_dbm", advert.rssi_dbm)
        status = None if rssi is None else Status(rssi_dbm=int(rssi))
        sink.reading(
            Reading(device=cfg.device, ts_ms=self._clock(), battery=advert.battery, status=status)
        )

    def _complain(self, what: str) -> None:
        # Once per change of problem: a device advertising every second must not flood the log.
        if what != self._complaint:
            self._complaint = what
            _LOG.warning("BTHome %s (%s): %s", self._config.device, self._config.address, what)

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        # Report a change of state or of reason (offline: silent vs undecryptable).
        if (online, detail) == self._state:
            return
        self._state = (online, detail)
        _LOG.info(
            "BTHome %s %s: %s", self._config.device, "online" if online else "offline", detail
        )
        sink.availability(self._config.device, online, detail)
