"""Shared bleak plumbing for the BLE drivers: scanning, finding a device, error classes.

Each driver opens its own BleakScanner (BlueZ multiplexes them). The optional
`backend` arguments are bleak's public hook for a custom backend; tests pass
an emulated one, production passes None (the platform backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Final

from bleak import BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from fleet.drivers.ble.config import MAC_PATTERN

ScannerBackend = type[BaseBleakScanner] | None
ClientBackend = type[BaseBleakClient] | None
AdvertCallback = Callable[[BLEDevice, AdvertisementData], None]

# Without a system D-Bus, bleak on Linux raises a bare FileNotFoundError (an
# OSError), not a BleakError; EOFError comes from a D-Bus connection that drops.
BLUETOOTH_ERRORS: Final = (BleakError, OSError, EOFError, TimeoutError)


def same_address(a: str, b: str) -> bool:
    return a.replace("-", ":").upper() == b.replace("-", ":").upper()


def is_mac(address: str) -> bool:
    return re.match(MAC_PATTERN, address) is not None


@contextlib.asynccontextmanager
async def scanning(callback: AdvertCallback, *, backend: ScannerBackend) -> AsyncIterator[None]:
    """Run an active scan for the duration of the block; `callback` sees every advert."""
    scanner = BleakScanner(callback, backend=backend)
    await scanner.start()
    try:
        yield
    finally:
        with contextlib.suppress(*BLUETOOTH_ERRORS):
            await scanner.stop()


async def find_device(
    address: str,
    timeout_s: float,
    *,
    backend: ScannerBackend,
    on_advert: Callable[[], None] = lambda: None,
) -> BLEDevice | None:
    """Scan up to `timeout_s` for `address`; None when it did not advertise."""
    found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

    def seen(device: BLEDevice, _adv: AdvertisementData) -> None:
        on_advert()
        if same_address(device.address, address) and not found.done():
            found.set_result(device)

    async with scanning(seen, backend=backend):
        try:
            async with asyncio.timeout(timeout_s):
                return await found
        except TimeoutError:
            return None
