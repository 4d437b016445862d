"""Scooters on a fake radio, plugged into bleak through its public `backend=` hook.

`Air` holds scooters by address. `air.scanner_backend` / `air.client_backend`
are `BaseBleakScanner` / `BaseBleakClient` subclasses bound to it: the scanner
advertises every powered scooter a few times a second, the client exposes the
Nordic UART service, feeds written chunks to the scooter's `NinebotEmulator`
and notifies the reply bytes in 20-byte pieces, as a real scooter does.

A scooter can be made `encrypted`: it then speaks NinebotCrypto through its
`crypto` (`CryptoScooter`, ninebot_crypto.py): no answer to plaintext (or, with
`plaintext_reply`, an encrypted-looking one), the handshake with a power-button
press, a MAC check on every frame. `gen3` gives it the Segway Encryption2 GATT
service instead of the Nordic UART one; `gen3_frames` makes it answer on the NUS
with `5A B5` frames. It can `drop()` its link, or be switched off (`advertising`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from tests.drivers.emulators.ninebot import NinebotEmulator, ScooterState, ninebot_frame
from tests.drivers.emulators.ninebot_crypto import CryptoScooter

NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
GEN3_SERVICE = "6e400001-0000-0000-006e-696e65626f74"
GEN3_WRITE = "6e400002-0000-0000-006e-696e65626f74"
GEN3_NOTIFY = "6e400004-0000-0000-006e-696e65626f74"
NINEBOT_COMPANY_ID = 0x424E
ADVERT_PERIOD_S = 0.02
NOTIFY_CHUNK = 20


def crypto_shaped(reply: bytes, counter: int) -> bytes:
    """A plain reply re-laid out as NinebotCrypto sends it (protocols.md §1.7 A)."""
    body = bytes(b ^ (0xA5 + i * 7 & 0xFF) for i, b in enumerate(reply[3:-2]))
    mac = bytes((0x13, 0x37, counter & 0xFF, 0xC3))
    return reply[:3] + body + mac + counter.to_bytes(2, "little")


@dataclass
class FakeScooter:
    address: str
    name: str = "NBScooter1234"
    emulator: NinebotEmulator = field(default_factory=NinebotEmulator)
    rssi: int = -61
    advertising: bool = True
    encrypted: bool = False
    plaintext_reply: bool = False  # encrypted, yet answers plaintext with encrypted noise
    gen3: bool = False
    gen3_frames: bool = False
    crypto: CryptoScooter = field(init=False)
    refuse_connect: bool = False
    connections: int = 0
    attempts: list[float] = field(default_factory=list)  # monotonic time of each connect()
    max_write_len: int = 0
    client: FakeClientBackend | None = None

    def __post_init__(self) -> None:
        self.crypto = CryptoScooter(self.name, self.emulator)

    def drop(self) -> None:
        """The radio link breaks (scooter rode out of range)."""
        if self.client is not None:
            self.client.lose_link()


class Air:
    def __init__(self) -> None:
        self.scooters: dict[str, FakeScooter] = {}
        air = self

        class Scanner(FakeScannerBackend):
            pass

        class Client(FakeClientBackend):
            pass

        Scanner.air = air
        Client.air = air
        self.scanner_backend: type[BaseBleakScanner] = Scanner
        self.client_backend: type[BaseBleakClient] = Client

    def add(self, address: str, state: ScooterState | None = None, **kw: Any) -> FakeScooter:
        sc = FakeScooter(address, emulator=NinebotEmulator(state), **kw)
        self.scooters[address.upper()] = sc
        return sc


class FakeScannerBackend(BaseBleakScanner):
    air: Air

    def __init__(self, detection_callback: Any, service_uuids: Any, *args: Any, **kw: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.create_task(self._advertise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _advertise(self) -> None:
        while True:
            for sc in list(self.air.scooters.values()):
                if not sc.advertising:
                    continue
                adv = AdvertisementData(
                    local_name=sc.name,
                    manufacturer_data={NINEBOT_COMPANY_ID: bytes.fromhex("2100000000de")},
                    service_data={},
                    service_uuids=[NUS_SERVICE],
                    tx_power=None,
                    rssi=sc.rssi,
                    platform_data=(),
                )
                dev = self.create_or_update_device(sc.address, sc.address, sc.name, None, adv)
                self.call_detection_callbacks(dev, adv)
            await asyncio.sleep(ADVERT_PERIOD_S)


class FakeClientBackend(BaseBleakClient):
    air: Air

    def __init__(self, address_or_ble_device: BLEDevice | str, **kw: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kw.pop("disconnected_callback", None),
            timeout=kw.pop("timeout", 10.0),
        )
        self._connected = False
        self._notify: NotifyCallback | None = None
        self._counter = 0

    @property
    def scooter(self) -> FakeScooter:
        return self.air.scooters[self.address.upper()]

    @property
    def mtu_size(self) -> int:
        return 23

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        sc = self.scooter
        sc.attempts.append(time.monotonic())
        if sc.refuse_connect or not sc.advertising:
            raise BleakError(f"Device with address {self.address} was not found")
        services = BleakGATTServiceCollection()
        svc = BleakGATTService(None, 1, GEN3_SERVICE if sc.gen3 else NUS_SERVICE)
        services.add_service(svc)
        rx_props: list[CharacteristicPropertyName] = ["write-without-response", "write"]
        tx_props: list[CharacteristicPropertyName] = ["notify"]
        rx, tx = (GEN3_WRITE, GEN3_NOTIFY) if sc.gen3 else (NUS_RX, NUS_TX)
        for handle, uuid, props in ((2, rx, rx_props), (4, tx, tx_props)):
            services.add_characteristic(
                BleakGATTCharacteristic(None, handle, uuid, props, lambda: NOTIFY_CHUNK, svc)
            )
        self.services = services
        self._connected = True
        sc.crypto.reset()
        sc.connections += 1
        sc.client = self

    async def disconnect(self) -> None:
        self._connected = False

    def lose_link(self) -> None:
        if not self._connected:
            return
        self._connected = False
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def unpair(self) -> None:
        raise NotImplementedError

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, **kwargs: Any
    ) -> bytearray:
        raise BleakError("NUS characteristics are not readable")

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, **kwargs: Any
    ) -> bytearray:
        raise BleakError("no descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        if characteristic.uuid != NUS_RX:
            raise BleakError(f"write to {characteristic.uuid}")
        sc = self.scooter
        sc.max_write_len = max(sc.max_write_len, len(data))
        reply = self._reply(sc, bytes(data))
        if not reply:
            return
        loop = asyncio.get_running_loop()
        # Notifications arrive later, on the loop, in pieces: never inside the write.
        for i in range(0, len(reply), NOTIFY_CHUNK):
            loop.call_soon(self._deliver, bytearray(reply[i : i + NOTIFY_CHUNK]))

    def _reply(self, sc: FakeScooter, data: bytes) -> bytes:
        if sc.gen3_frames:
            return b"\x5a\xb5\x00\x3e\x21\x5b\x00" + bytes(6)
        if not sc.encrypted:
            return sc.emulator.feed(data)
        refused = sc.crypto.stats.plaintext_refused
        reply = sc.crypto.feed(data)
        if sc.plaintext_reply and sc.crypto.stats.plaintext_refused > refused:
            self._counter += 1
            return crypto_shaped(ninebot_frame(0x20, 0x3E, 0x04, 0x1A, b"\x39\x01"), self._counter)
        return reply

    def _deliver(self, chunk: bytearray) -> None:
        if self._connected and self._notify is not None:
            self._notify(chunk)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        if characteristic.uuid != NUS_TX:
            raise BleakError(f"notify on {characteristic.uuid}")
        self._notify = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._notify = None
