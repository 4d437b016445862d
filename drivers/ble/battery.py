"""`ble_battery` driver: a handheld's GATT Battery Service, read while it sits in its cradle.

Finds the device by scanning, connects, reads Device Information once per
connection (firmware -> status.firmware; manufacturer and model for the log),
then reads Battery Level (0x2A19) every `poll_interval_s` and also takes its
notifications when the device offers them. Polling continues under notify on
purpose: a level that never changes would otherwise look like a silent device.
A lost link -> offline, reconnect with exponential backoff; a device that is
not found in `offline_after_scans` scans in a row -> offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import ClassVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ble.config import BleBatteryConfig
from fleet.drivers.ble.decode import (
    BATTERY_LEVEL,
    FIRMWARE_REVISION,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
    decode_battery_level,
    decode_text,
)
from fleet.drivers.ble.scanner import (
    BLUETOOTH_ERRORS,
    ClientBackend,
    ScannerBackend,
    find_device,
)
from fleet.drivers.readings import Battery, Reading, Status, firmware_label

_LOG = logging.getLogger(__name__)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class BleBattery:
    """One cradled handheld; see the module docstring."""

    kind: ClassVar[str] = "ble_battery"

    def __init__(
        self,
        config: BleBatteryConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        scanner_backend: ScannerBackend = None,
        client_backend: ClientBackend = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._state: tuple[bool, str] | None = None
        self._firmware: str | None = None
        self.readings = 0
        self.refused = 0

    async def run(self, sink: DriverSink) -> None:
        cfg = self._config
        backoff = Backoff(cfg.reconnect_backoff_initial_s, cfg.reconnect_backoff_max_s).counter()
        misses = 0
        while True:
            try:
                device = await find_device(
                    cfg.address,
                    cfg.scan_timeout_s,
                    backend=self._scanner_backend,
                    on_advert=sink.advert_seen,
                )
            except BLUETOOTH_ERRORS as exc:
                self._set_online(sink, False, f"Bluetooth unavailable: {exc!r}")
                raise
            if device is None:
                misses += 1
                _LOG.debug("Battery %s: %s not found (%d scans)", cfg.device, cfg.address, misses)
                if misses >= cfg.offline_after_scans:
                    self._set_online(sink, False, f"not found in {misses} scans")
            else:
                misses = 0
                before = self.readings
                await self._session(device, sink)
                if self.readings > before:
                    backoff.reset()
            await asyncio.sleep(backoff.next())

    async def _session(self, device: BLEDevice, sink: DriverSink) -> None:
        """One connection, until the link drops or fails."""
        cfg = self._config
        lost = asyncio.Event()
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: lost.set(),
            timeout=cfg.connect_timeout_s,
            backend=self._client_backend,
        )
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                await client.connect()
        except BLUETOOTH_ERRORS as exc:
            _LOG.warning("Battery %s: connect to %s failed: %r", cfg.device, cfg.address, exc)
            self._set_online(sink, False, f"connect failed: {exc!r}")
            return
        detail = "disconnected"
        try:
            await self._serve(client, lost, sink)
        except BLUETOOTH_ERRORS as exc:
            _LOG.warning("Battery %s: link error: %r", cfg.device, exc)
            detail = f"link error: {exc!r}"
        finally:
            with contextlib.suppress(*BLUETOOTH_ERRORS):
                await client.disconnect()
            self._set_online(sink, False, detail)

    async def _serve(self, client: BleakClient, lost: asyncio.Event, sink: DriverSink) -> None:
        cfg = self._config
        level = client.services.get_characteristic(BATTERY_LEVEL)
        if level is None:
            raise BleakError("device has no Battery Level characteristic (0x2A19)")
        self._firmware = firmware_label(await self._read_text(client, FIRMWARE_REVISION))
        _LOG.info(
            "Battery %s: connected to %s (%s %s, firmware %s)",
            cfg.device,
            cfg.address,
            await self._read_text(client, MANUFACTURER_NAME),
            await self._read_text(client, MODEL_NUMBER),
            self._firmware,
        )
        self._set_online(sink, True, "connected")
        await self._poll(client, level, sink)
        if cfg.use_notify and "notify" in level.properties:
            await client.start_notify(level, lambda _char, data: self._emit(sink, data, "notify"))
        while True:
            try:
                async with asyncio.timeout(cfg.poll_interval_s):
                    await lost.wait()
                return
            except TimeoutError:
                await self._poll(client, level, sink)

    async def _poll(
        self, client: BleakClient, level: BleakGATTCharacteristic, sink: DriverSink
    ) -> None:
        async with asyncio.timeout(self._config.connect_timeout_s):
            data = await client.read_gatt_char(level)
        self._emit(sink, data, "read")

    async def _read_text(self, client: BleakClient, uuid: str) -> str | None:
        char = client.services.get_characteristic(uuid)
        if char is None or "read" not in char.properties:
            return None
        async with asyncio.timeout(self._config.connect_timeout_s):
            return decode_text(await client.read_gatt_char(char))

    def _emit(self, sink: DriverSink, data: bytes | bytearray, how: str) -> None:
        pct = decode_battery_level(data)
        if pct is None:
            self.refused += 1
            _LOG.warning(
                "Battery %s: refused battery level %s (%s): not one byte in 0-100",
                self._config.device,
                bytes(data).hex() or "<empty>",
                how,
            )
            return
        self.readings += 1
        status = None if self._firmware is None else Status(firmware=self._firmware)
        sink.reading(
            Reading(
                device=self._config.device,
                ts_ms=self._clock(),
                battery=Battery(pct=float(pct)),
                status=status,
            )
        )

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        # Report changes of state only; the first offline reason is kept until back online.
        if self._state is not None and self._state[0] == online:
            return
        self._state = (online, detail)
        _LOG.info(
            "Battery %s %s: %s", self._config.device, "online" if online else "offline", detail
        )
        sink.availability(self._config.device, online, detail)
