"""`ninebot_ble` driver: the same read-only polling over the scooter's BLE Nordic UART service.

Requests are written to NUS RX (6e400002-...) in 20-byte chunks; replies come
as notifications on NUS TX (6e400003-...), cut at any point, and are
reassembled by the frame decoder.

Newer BLE firmwares encrypt the link (NinebotCrypto). Such a scooter answers
with frames that keep `5A A5 L` in clear but are L + 13 bytes long and never
carry a valid plain checksum. The driver recognises that, says so once in the
log and on the device's availability, and then only retries on a slow capped
backoff: it never spins, never crashes, and never tries to pair (pairing needs
a power-button press and would take the scooter away from the official app).

Disconnects and failed connections are retried with capped exponential
backoff. A missing adapter or D-Bus surfaces as OSError and is handled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ninebot.config import NinebotBleConfig
from fleet.drivers.ninebot.frames import NINEBOT_HEADER, looks_encrypted
from fleet.drivers.ninebot.poll import HOST_BLE
from fleet.drivers.ninebot.registers import MODELS, to_reading
from fleet.drivers.ninebot.session import Exchange, PollResult

_LOG = logging.getLogger(__name__)

NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # we write requests here
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # the scooter notifies replies here
CHUNK = 20  # what the official apps write; safe on the smallest ATT MTU

ENCRYPTED_DETAIL = "encrypted BLE firmware (NinebotCrypto) - not supported; use the serial link"

_MAX_BURST = 512  # longest plausible reply; bounds memory on a babbling device


T = TypeVar("T")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Encrypted(Exception):
    """The scooter speaks NinebotCrypto."""


class _Gone(Exception):
    """The scooter was not found or stopped answering; `detail` says which."""


class NinebotBle:
    """Polls one scooter over BLE; see the module docstring."""

    kind: ClassVar[str] = "ninebot_ble"

    def __init__(
        self,
        config: NinebotBleConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._model = MODELS[config.model]
        self._online: bool | None = None
        self._detail = ""
        self._backoff = Backoff(
            config.reconnect_backoff_initial_s, config.reconnect_backoff_max_s
        ).counter()
        self._crypto_backoff = Backoff(
            config.encrypted_backoff_initial_s, config.encrypted_backoff_max_s
        ).counter()
        self._encrypted_logged = False
        self._rssi: int | None = None
        self.connects = 0  # connection attempts, for tests

    async def run(self, sink: DriverSink) -> None:
        while True:
            try:
                await self._session(sink)
                delay = self._backoff.next()
            except _Encrypted:
                self._report_encrypted(sink)
                delay = self._crypto_backoff.next()
            except _Gone as gone:
                self._set_online(sink, False, str(gone))
                delay = self._backoff.next()
            except (BleakError, OSError, TimeoutError) as exc:
                # OSError: no adapter / no D-Bus; TimeoutError: connect timed out
                self._set_online(sink, False, f"BLE error: {exc or type(exc).__name__}")
                delay = self._backoff.next()
            _LOG.debug("%s: next BLE attempt in %.1f s", self._config.device, delay)
            await asyncio.sleep(delay)

    async def _find(self, sink: DriverSink) -> BLEDevice:
        wanted = self._config.address.lower()

        def match(dev: BLEDevice, adv: AdvertisementData) -> bool:
            sink.advert_seen()
            if dev.address.lower() != wanted:
                return False
            self._rssi = adv.rssi
            return True

        timeout = self._config.scan_timeout_s
        if self._scanner_backend is None:
            device = await BleakScanner.find_device_by_filter(match, timeout=timeout)
        else:
            device = await BleakScanner.find_device_by_filter(
                match, timeout=timeout, backend=self._scanner_backend
            )
        if device is None:
            raise _Gone(f"not seen in a {self._config.scan_timeout_s:g} s BLE scan")
        return device

    async def _session(self, sink: DriverSink) -> None:
        cfg = self._config
        device = await self._find(sink)
        lost = asyncio.Event()
        encrypted = asyncio.Event()
        burst = bytearray()
        self.connects += 1
        client = BleakClient(
            device,
            disconnected_callback=lambda _c: lost.set(),
            timeout=cfg.connect_timeout_s,
            backend=self._client_backend,
        )

        async def send(data: bytes) -> None:
            for i in range(0, len(data), CHUNK):
                await client.write_gatt_char(NUS_RX, data[i : i + CHUNK], response=False)

        exchange = Exchange(self._model, HOST_BLE, send, cfg.response_timeout_s)

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            # A notification that starts with the header starts a new reply; the
            # rest continue it. Only the whole reply shows the encrypted length.
            if data[:2] == NINEBOT_HEADER or len(burst) > _MAX_BURST:
                burst.clear()
            burst.extend(data)
            if looks_encrypted(burst):
                encrypted.set()
            exchange.feed(data)

        await client.connect()
        try:
            await client.start_notify(NUS_TX, on_notify)
            await self._poll_loop(exchange, sink, lost, encrypted)
        finally:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await client.disconnect()

    async def _poll_loop(
        self, exchange: Exchange, sink: DriverSink, lost: asyncio.Event, encrypted: asyncio.Event
    ) -> None:
        cfg = self._config
        loop = asyncio.get_running_loop()
        misses = 0
        cycle = 0
        while True:
            started = loop.time()
            result = await _until_event(exchange.poll(cycle), lost, encrypted)
            if encrypted.is_set():
                raise _Encrypted
            if result is None or lost.is_set():
                raise _Gone("disconnected")
            cycle += 1
            if result.answered:
                misses = 0
                self._backoff.reset()
                self._crypto_backoff.reset()
                self._set_online(sink, True, "")
                self._emit(sink, result)
            else:
                misses += 1
                if misses >= cfg.offline_after_misses:
                    raise _Gone(f"no reply over BLE ({misses} polls)")
            wait = max(0.0, started + cfg.poll_interval_s - loop.time())
            if await _until_event(asyncio.sleep(wait, True), lost, encrypted) is None:
                raise _Encrypted if encrypted.is_set() else _Gone("disconnected")

    def _emit(self, sink: DriverSink, result: PollResult) -> None:
        reading = to_reading(self._config.device, self._clock(), result.esc, result.bms)
        if reading is None:
            return
        if reading.status is not None and self._rssi is not None:
            reading = dataclasses.replace(
                reading, status=dataclasses.replace(reading.status, rssi_dbm=self._rssi)
            )
        sink.reading(reading)

    def _report_encrypted(self, sink: DriverSink) -> None:
        if not self._encrypted_logged:
            self._encrypted_logged = True
            _LOG.warning(
                "%s: scooter %s answers with encrypted frames (NinebotCrypto BLE firmware); "
                "this driver reads plaintext only - use the serial link. Retrying every %g-%g s.",
                self._config.device,
                self._config.address,
                self._config.encrypted_backoff_initial_s,
                self._config.encrypted_backoff_max_s,
            )
        else:
            _LOG.debug("%s: still encrypted", self._config.device)
        self._set_online(sink, False, ENCRYPTED_DETAIL)

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online and detail == self._detail:
            return
        self._online, self._detail = online, detail
        if online:
            _LOG.info(
                "%s: scooter %s answering over BLE", self._config.device, self._config.address
            )
        elif detail != ENCRYPTED_DETAIL:
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        sink.availability(self._config.device, online, detail)


async def _until_event(aw: Coroutine[Any, Any, T], *events: asyncio.Event) -> T | None:
    """The result of `aw`, or None if one of `events` is set first (`aw` is then cancelled)."""
    task = asyncio.ensure_future(aw)
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if task in done else None
