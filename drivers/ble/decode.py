"""Pure decoders for what handhelds expose over BLE: GATT battery/device info, BTHome v2 adverts.

Bytes in, typed values out, no bleak and no I/O: the drivers beside this
module do the radio work. Every decoder returns None (or an empty result) for
input it cannot trust instead of raising.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.parser import EncryptionScheme
from habluetooth import BluetoothServiceInfoBleak

from fleet.drivers.readings import Battery, within


def uuid16(short: int) -> str:
    """The 128-bit string form bleak uses for a SIG-assigned 16-bit UUID."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


BATTERY_SERVICE = uuid16(0x180F)
BATTERY_LEVEL = uuid16(0x2A19)
DEVICE_INFORMATION = uuid16(0x180A)
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
FIRMWARE_REVISION = uuid16(0x2A26)
BTHOME_SERVICE_DATA = uuid16(0xFCD2)

# Device Information strings are free text from the device; cap what we pass on.
MAX_TEXT = 64


def decode_battery_level(data: bytes | bytearray) -> int | None:
    """Battery Level 0x2A19: one uint8, 0-100 %. Anything else is refused (None)."""
    if len(data) != 1 or data[0] > 100:
        return None
    return data[0]


def decode_text(data: bytes | bytearray) -> str | None:
    """A Device Information string (UTF-8, sometimes NUL-padded); None when empty."""
    text = bytes(data).split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    return text[:MAX_TEXT] or None


@dataclass(frozen=True, slots=True)
class BTHomeAdvert:
    """What one BTHome service-data payload said."""

    battery: Battery | None = None
    rssi_dbm: int | None = None
    encrypted: bool = False
    # Encrypted but no bind key, or the key does not decrypt it: no values.
    undecryptable: bool = False
    # A bind key is configured but the advert came in plaintext (spoof or reset device).
    downgraded: bool = False
    packet_id: int | None = None


def _first(values: dict[str, Any], name: str) -> float | None:
    # bthome-ble names repeated objects name_1, name_2 ...; the first is the main one.
    for key in (name, f"{name}_1"):
        value = values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            return number if math.isfinite(number) else None
    return None


def decode_bthome(
    payload: bytes,
    address: str,
    *,
    bindkey: bytes | None = None,
    rssi: int | None = None,
) -> BTHomeAdvert:
    """Decode the 0xFCD2 service data of one advertisement with bthome-ble.

    A fresh parser per advert on purpose: bthome-ble's parser accumulates
    values across updates, so a long-lived one would re-report an old battery
    value from an advert that failed to decrypt.
    """
    parser = BTHomeBluetoothDeviceData(bindkey=bindkey)
    info = BluetoothServiceInfoBleak(
        name="",
        address=address,
        rssi=-127 if rssi is None else rssi,
        manufacturer_data={},
        service_data={BTHOME_SERVICE_DATA: bytes(payload)},
        service_uuids=[BTHOME_SERVICE_DATA],
        source="local",
        device=BLEDevice(address, None, None),
        advertisement=None,
        connectable=False,
        time=time.monotonic(),
        tx_power=None,
    )
    try:
        update = parser.update(info)
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError):
        return BTHomeAdvert(rssi_dbm=rssi)
    encrypted = parser.encryption_scheme == EncryptionScheme.BTHOME_BINDKEY
    if parser.downgrade_detected:
        return BTHomeAdvert(rssi_dbm=rssi, downgraded=True)
    if encrypted and not parser.bindkey_verified:
        return BTHomeAdvert(rssi_dbm=rssi, encrypted=True, undecryptable=True)
    values = {key.key: value.native_value for key, value in update.entity_values.items()}
    binaries = {key.key: value.native_value for key, value in update.binary_entity_values.items()}
    charging = binaries.get("battery_charging")
    # BTHome can carry values the contract refuses (0x4A voltage reaches 6553.5 V): such a
    # field is left out, not the whole reading.
    battery = Battery(
        pct=within("pct", _first(values, "battery")),
        voltage_v=within("voltage_v", _first(values, "voltage")),
        current_a=within("current_a", _first(values, "current")),
        temp_c=within("temp_c", _first(values, "temperature")),
        charging=charging if isinstance(charging, bool) else None,
    )
    packet = _first(values, "packet_id")
    return BTHomeAdvert(
        battery=None if battery == Battery() else battery,
        rssi_dbm=rssi,
        encrypted=encrypted,
        packet_id=None if packet is None else int(packet),
    )
