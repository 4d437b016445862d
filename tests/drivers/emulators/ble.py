"""An emulated Bluetooth radio for bleak's public `backend=` hook.

`BleAir` is the air between the agent and the devices. `air.scanner_backend`
and `air.client_backend` are BaseBleakScanner / BaseBleakClient subclasses
bound to it, passed to `BleakScanner(..., backend=...)` and
`BleakClient(..., backend=...)` exactly where the real BlueZ backend would be.

- Advertisements are given as raw AD bytes (what a controller receives) and
  parsed with bluetooth-data-tools into bleak's AdvertisementData, as BlueZ
  would; or as ready service data.
- `GattPeripheral` holds services and characteristics with values: reads
  return the bytes, `notify()` pushes a value to subscribed clients,
  `drop()` breaks the link (bleak's disconnected_callback fires), and
  `present=False` makes connects fail like an absent device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bluetooth_data_tools import parse_advertisement_data_bytes


def uuid16(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


@dataclass
class Characteristic:
    uuid: str
    value: bytes
    properties: list[str] = field(default_factory=lambda: ["read"])


@dataclass
class GattPeripheral:
    """A connectable device: {service uuid: [characteristics]}."""

    address: str
    services: dict[str, list[Characteristic]]
    name: str = "handheld"
    present: bool = True
    connectable: bool = True  # False: it advertises but every connect fails
    connects: int = 0
    connect_attempts: list[float] = field(default_factory=list)  # loop times
    reads: int = 0
    clients: list[_FakeClient] = field(default_factory=list)

    def char(self, uuid: str) -> Characteristic:
        for chars in self.services.values():
            for c in chars:
                if c.uuid == uuid:
                    return c
        raise KeyError(uuid)

    def set_value(self, uuid: str, value: bytes) -> None:
        self.char(uuid).value = value

    def notify(self, uuid: str, value: bytes) -> None:
        """Change the value and notify every subscribed client, as the device would."""
        self.set_value(uuid, value)
        for client in list(self.clients):
            client.deliver(uuid, value)

    def drop(self) -> None:
        """The link breaks (device leaves the cradle, out of range)."""
        for client in list(self.clients):
            client.lost()

    @property
    def connected(self) -> bool:
        return bool(self.clients)


class BleAir:
    def __init__(self) -> None:
        self.scanners: set[BaseBleakScanner] = set()
        self.peripherals: dict[str, GattPeripheral] = {}
        self.scanner_starts = 0
        air = self

        class FakeScanner(BaseBleakScanner):
            def __init__(
                self,
                detection_callback: Any,
                service_uuids: list[str] | None,
                scanning_mode: str = "active",
                **kwargs: Any,
            ) -> None:
                super().__init__(detection_callback, service_uuids)

            async def start(self) -> None:
                self.seen_devices = {}
                air.scanners.add(self)
                air.scanner_starts += 1

            async def stop(self) -> None:
                air.scanners.discard(self)

        class Client(_FakeClient):
            _air = air

        self.scanner_backend: type[BaseBleakScanner] = FakeScanner
        self.client_backend: type[BaseBleakClient] = Client

    def add(self, peripheral: GattPeripheral) -> GattPeripheral:
        self.peripherals[peripheral.address.upper()] = peripheral
        return peripheral

    def advertise_raw(self, address: str, raw: bytes, rssi: int = -60) -> None:
        """Deliver one advertisement given as raw AD structures (flags, name, service data ...)."""
        name, uuids, service_data, manufacturer, tx_power = parse_advertisement_data_bytes(raw)
        self._deliver(
            address,
            AdvertisementData(
                local_name=name,
                manufacturer_data=dict(manufacturer),
                service_data=dict(service_data),
                service_uuids=list(uuids),
                tx_power=tx_power,
                rssi=rssi,
                platform_data=(),
            ),
        )

    def advertise(
        self,
        address: str,
        *,
        service_data: dict[str, bytes] | None = None,
        local_name: str | None = None,
        rssi: int = -60,
    ) -> None:
        self._deliver(
            address,
            AdvertisementData(
                local_name=local_name,
                manufacturer_data={},
                service_data=dict(service_data or {}),
                service_uuids=list(service_data or {}),
                tx_power=None,
                rssi=rssi,
                platform_data=(),
            ),
        )

    def advertise_peripherals(self) -> None:
        """Every present connectable peripheral advertises once (connectable advert, name only)."""
        for p in self.peripherals.values():
            if p.present:
                self.advertise(p.address, local_name=p.name)

    @contextlib.asynccontextmanager
    async def beaconing(self, period_s: float = 0.02) -> AsyncIterator[None]:
        """Present peripherals advertise every `period_s` for the duration of the block."""

        async def beacon() -> None:
            while True:
                self.advertise_peripherals()
                await asyncio.sleep(period_s)

        task = asyncio.create_task(beacon())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _deliver(self, address: str, adv: AdvertisementData) -> None:
        for scanner in list(self.scanners):
            device = scanner.create_or_update_device(address, address, adv.local_name, None, adv)
            if scanner.is_allowed_uuid(adv.service_uuids):
                scanner.call_detection_callbacks(device, adv)


class _FakeClient(BaseBleakClient):
    _air: BleAir

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._peripheral: GattPeripheral | None = None
        self._subscriptions: dict[str, NotifyCallback] = {}

    @property
    def name(self) -> str:
        return "" if self._peripheral is None else self._peripheral.name

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self._peripheral is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0)  # a connect is never synchronous on a real stack
        peripheral = self._air.peripherals.get(self.address.upper())
        if peripheral is not None:
            peripheral.connect_attempts.append(asyncio.get_running_loop().time())
        if peripheral is None or not peripheral.present:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        if not peripheral.connectable:
            raise BleakError("le-connection-abort-by-local")
        collection = BleakGATTServiceCollection()
        handle = 1
        for service_uuid, chars in peripheral.services.items():
            service = BleakGATTService(None, handle, service_uuid)
            collection.add_service(service)
            handle += 1
            for c in chars:
                collection.add_characteristic(
                    BleakGATTCharacteristic(
                        None,
                        handle,
                        c.uuid,
                        list(c.properties),  # type: ignore[arg-type]
                        lambda: 20,
                        service,
                    )
                )
                handle += 2
        self.services = collection
        self._peripheral = peripheral
        peripheral.clients.append(self)
        peripheral.connects += 1

    async def disconnect(self) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._peripheral is not None:
            self._peripheral.clients.remove(self)
        self._peripheral = None
        self._subscriptions.clear()

    def lost(self) -> None:
        self._detach()
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    def deliver(self, uuid: str, value: bytes) -> None:
        callback = self._subscriptions.get(uuid)
        if callback is not None:
            callback(bytearray(value))

    def _live(self) -> GattPeripheral:
        if self._peripheral is None:
            raise BleakError("Not connected")
        return self._peripheral

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def unpair(self) -> None:
        pass

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        await asyncio.sleep(0)
        peripheral = self._live()
        peripheral.reads += 1
        return bytearray(peripheral.char(characteristic.uuid).value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("no descriptors in this emulator")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        raise BleakError("read-only emulator: a handheld driver never writes")

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("read-only emulator: a handheld driver never writes")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._live()
        if "notify" not in characteristic.properties:
            raise BleakError(f"{characteristic.uuid} does not notify")
        self._subscriptions[characteristic.uuid] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._subscriptions.pop(characteristic.uuid, None)


def handheld(
    address: str,
    *,
    level: int = 87,
    notify: bool = True,
    firmware: str = "2.4.1",
    manufacturer: str = "Zebra",
    model: str = "TC52",
) -> GattPeripheral:
    """A handheld in its cradle: Battery Service and Device Information, real UUIDs and encodings."""
    props = ["read", "notify"] if notify else ["read"]
    return GattPeripheral(
        address=address,
        services={
            uuid16(0x180F): [Characteristic(uuid16(0x2A19), bytes([level]), props)],
            uuid16(0x180A): [
                Characteristic(uuid16(0x2A29), manufacturer.encode()),
                Characteristic(uuid16(0x2A24), model.encode()),
                Characteristic(uuid16(0x2A26), firmware.encode() + b"\x00"),
            ],
        },
    )
