"""`ninebot_ble` driver: the same read-only polling over the scooter's BLE Nordic UART service.

Requests are written to NUS RX (6e400002-...) in 20-byte chunks; replies come
as notifications on NUS TX (6e400003-...), cut at any point, and are
reassembled.

Each connection first probes plaintext (one register read). A scooter that
answers it is polled in plaintext. One that answers with encrypted frames, or
not at all, is offered the NinebotCrypto handshake (`pairing.py`): with the app
key stored from an earlier pairing it completes at once; otherwise the scooter
wants its power button pressed, which the log says once and the device's
availability says while the driver waits (bounded, then the slow
`encrypted_backoff_*`). Then the same polling runs through the encrypted link
(`ble_link.py`), where every frame's MAC is checked before anything is read from it.

Unsupported, and reported offline with that reason on the slow backoff: Segway
"Encryption2" scooters (their own GATT service, `5A B5` frames) and scooters
that answer plaintext with encrypted frames but not the NinebotCrypto INIT.

Disconnects and failed connections are retried with capped exponential
backoff. A missing adapter or D-Bus surfaces as OSError and is handled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ninebot.ble_link import Link, until_event
from fleet.drivers.ninebot.config import NinebotBleConfig
from fleet.drivers.ninebot.crypto import NinebotCrypto, Refusal
from fleet.drivers.ninebot.frames import Framing
from fleet.drivers.ninebot.pairing import KeyStore, NoInitReply, PairingError, handshake
from fleet.drivers.ninebot.poll import HOST_BLE, ReadRequest, poll_interval, until_next_tick
from fleet.drivers.ninebot.registers import MODELS, Target
from fleet.drivers.ninebot.session import Exchange, PollResult
from fleet.drivers.readings import State

_LOG = logging.getLogger(__name__)

NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # we write requests here
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # the scooter notifies replies here
GEN3_SERVICE = "6e400001-0000-0000-006e-696e65626f74"  # Segway Encryption2 (protocols.md §1.7 C)

ENCRYPTED_DETAIL = (
    "encrypted BLE firmware that is not NinebotCrypto - not supported; use the serial link"
)
GEN3_DETAIL = (
    "Segway Encryption2 BLE (own GATT service, 5A B5 frames) - not supported; use the serial link"
)
UNREADABLE_DETAIL = (
    "NinebotCrypto INIT reply that does not decrypt (a variant not understood) - not supported; "
    "use the serial link"
)
PRESS_BUTTON_DETAIL = "press the power button to pair"

# The probe: one small read every model answers (the ESC's firmware word).
_PROBE = (ReadRequest(Target.ESC, 0x1A, 2),)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Unsupported(Exception):
    """The scooter's encryption is one this driver does not speak; the message says which."""


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
        self._keys = KeyStore(config.key_dir)
        self._online: bool | None = None
        self._detail = ""
        self._backoff = Backoff(
            config.reconnect_backoff_initial_s, config.reconnect_backoff_max_s
        ).counter()
        self._crypto_backoff = Backoff(
            config.encrypted_backoff_initial_s, config.encrypted_backoff_max_s
        ).counter()
        self._logged: set[str] = set()  # warnings said once per driver
        self._rssi: int | None = None
        self._name: str | None = None
        self._was_encrypted = False
        self.connects = 0  # connection attempts, for tests
        self.pairings = 0  # handshakes completed, for tests
        # Encrypted frames refused (bad MAC, counter, truncated...): never published.
        self.refused: Counter[Refusal] = Counter()

    async def run(self, sink: DriverSink) -> None:
        while True:
            try:
                await self._session(sink)
                delay = self._backoff.next()
            except _Unsupported as unsupported:
                self._report_unsupported(sink, str(unsupported))
                delay = self._crypto_backoff.next()
            except PairingError as failed:
                self._set_online(sink, False, str(failed))
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
            # The name keys NinebotCrypto; it may come only with a later scan response.
            self._name = adv.local_name or dev.name or self._name
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
        self.connects += 1
        client = BleakClient(
            device,
            disconnected_callback=lambda _c: lost.set(),
            timeout=cfg.connect_timeout_s,
            backend=self._client_backend,
        )

        async def write(chunk: bytes) -> None:
            await client.write_gatt_char(NUS_RX, chunk, response=False)

        link = Link(cfg.device, write, self.refused)

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            link.on_notify(data)

        await client.connect()
        try:
            if client.services.get_service(GEN3_SERVICE) is not None:
                raise _Unsupported(GEN3_DETAIL)
            await client.start_notify(NUS_TX, on_notify)
            if await self._probe_plain(link, lost):
                self._was_encrypted = False
                link.exchange = Exchange(self._model, HOST_BLE, link.send, cfg.response_timeout_s)
                await self._poll_loop(link, sink, lost)
            else:
                await self._pair(link, sink, lost)
                # Inside the encrypted link every model speaks 5A A5 frames (the INIT
                # and its vector are 5A A5 even on a Xiaomi); units stay the model's.
                model = dataclasses.replace(self._model, framing=Framing.NINEBOT)
                link.exchange = Exchange(model, HOST_BLE, link.send, cfg.response_timeout_s)
                await self._poll_loop(link, sink, lost)
        finally:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await client.disconnect()

    async def _probe_plain(self, link: Link, lost: asyncio.Event) -> bool:
        """True if the scooter answers a plaintext read; False if it wants encryption."""
        cfg = self._config
        probe = Exchange(self._model, HOST_BLE, link.send, cfg.response_timeout_s, _PROBE)
        link.exchange = probe
        # A scooter known to be encrypted gets one plaintext try, not the full tolerance.
        tries = 1 if self._was_encrypted else cfg.offline_after_misses
        for cycle in range(tries):
            result = await until_event(probe.poll(cycle), lost, link.encrypted, link.gen3)
            if link.encrypted.is_set():
                return False
            self._check_link(link, lost)
            if result is not None and result.answered:
                return True
        return False

    def _check_link(self, link: Link, lost: asyncio.Event) -> None:
        if link.gen3.is_set():
            raise _Unsupported(GEN3_DETAIL)
        if link.encrypted.is_set():
            # A firmware update turned a plaintext link encrypted: reconnect and pair.
            raise _Gone("the scooter answers encrypted now: reconnecting")
        if lost.is_set():
            raise _Gone("disconnected")

    async def _pair(self, link: Link, sink: DriverSink, lost: asyncio.Event) -> None:
        cfg = self._config
        if self._name is None:
            raise _Gone("encrypted scooter, but its BLE name (the key) was not in its adverts")
        link.use_crypto(NinebotCrypto(self._name))

        def on_button(displaced: bool) -> None:
            if displaced:
                self._warn_once(
                    "displaced",
                    "%s: scooter %s no longer accepts the stored app key (another app paired "
                    "with it since): pairing again",
                    cfg.device,
                    cfg.address,
                )
            self._warn_once(
                "button",
                "%s: scooter %s wants pairing: press its power button (asking every %g s "
                "for up to %g s, then again after %g s)",
                cfg.device,
                cfg.address,
                cfg.pair_interval_s,
                cfg.pair_timeout_s,
                cfg.encrypted_backoff_initial_s,
            )
            self._set_online(sink, False, PRESS_BUTTON_DETAIL)

        paired = handshake(
            link,
            self._keys,
            cfg.address,
            timeout_s=cfg.response_timeout_s,
            interval_s=cfg.pair_interval_s,
            pair_timeout_s=cfg.pair_timeout_s,
            on_button=on_button,
        )
        refused_before = self.refused.total()
        try:
            result = await until_event(paired, lost, link.gen3)
        except NoInitReply as silent:
            if self.refused.total() > refused_before:
                # It did answer, in frames that fail our checks: a variant we do not read.
                raise _Unsupported(UNREADABLE_DETAIL) from silent
            if link.encrypted.is_set():
                raise _Unsupported(ENCRYPTED_DETAIL) from silent
            raise _Gone(str(silent)) from silent
        link.encrypted.clear()  # it told us to pair; polling watches for 5A B5 and loss only
        self._check_link(link, lost)
        assert result is not None
        key, new = result
        self._was_encrypted = True
        self.pairings += 1
        self._logged -= {"button", "displaced"}  # a later pairing is news again
        if new:
            await self._keys.store(cfg.device, cfg.address, key)

    async def _poll_loop(self, link: Link, sink: DriverSink, lost: asyncio.Event) -> None:
        cfg = self._config
        exchange = link.exchange
        assert exchange is not None
        stop = (lost, link.encrypted, link.gen3)
        loop = asyncio.get_running_loop()
        misses = 0
        cycle = 0
        while True:
            started = loop.time()
            result = await until_event(exchange.poll(cycle), *stop)
            self._check_link(link, lost)
            if result is None:
                raise _Gone("disconnected")
            cycle += 1
            state = None
            if result.answered:
                misses = 0
                self._backoff.reset()
                self._crypto_backoff.reset()
                self._set_online(sink, True, "")
                state = self._emit(sink, result)
            else:
                misses += 1
                if misses >= cfg.offline_after_misses:
                    raise _Gone(f"no reply over BLE ({misses} polls)")
            interval = poll_interval(
                state,
                riding_s=cfg.poll_interval_s,
                idle_s=cfg.idle_poll_interval_s,
                charging_s=cfg.charging_poll_interval_s,
            )
            # On the shared ticks (poll.until_next_tick), as the serial scooters: the
            # loop wakes once a tick for every scooter, whenever each one connected.
            wait = until_next_tick(started, loop.time(), interval)
            await until_event(asyncio.sleep(wait, True), *stop)
            self._check_link(link, lost)

    def _emit(self, sink: DriverSink, result: PollResult) -> State | None:
        """Publishes the poll's reading; its state picks the next poll's interval."""
        reading = result.reading(self._config.device, self._clock())
        if reading is None:
            return None
        if reading.status is not None and self._rssi is not None:
            reading = dataclasses.replace(
                reading, status=dataclasses.replace(reading.status, rssi_dbm=self._rssi)
            )
        sink.reading(reading)
        return reading.status.state if reading.status is not None else None

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        if what in self._logged:
            return
        self._logged.add(what)
        _LOG.warning(message, *args)

    def _report_unsupported(self, sink: DriverSink, detail: str) -> None:
        self._warn_once(
            detail,
            "%s: scooter %s: %s. Retrying every %g-%g s.",
            self._config.device,
            self._config.address,
            detail,
            self._config.encrypted_backoff_initial_s,
            self._config.encrypted_backoff_max_s,
        )
        self._set_online(sink, False, detail)

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online and detail == self._detail:
            return
        self._online, self._detail = online, detail
        if online:
            _LOG.info(
                "%s: scooter %s answering over BLE", self._config.device, self._config.address
            )
        elif detail not in (ENCRYPTED_DETAIL, GEN3_DETAIL, UNREADABLE_DETAIL, PRESS_BUTTON_DETAIL):
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        sink.availability(self._config.device, online, detail)
