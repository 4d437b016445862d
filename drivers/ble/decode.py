"""Pure decoders for what handhelds expose over BLE: GATT battery/device info, BTHome v2 adverts.

Bytes in, typed values out, no bleak and no I/O: the drivers beside this
module do the radio work. Every decoder returns None (or an empty result) for
input it cannot trust instead of raising. The BTHome format itself is in
`bthome_v2`; here its values become the contract's battery fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.drivers.ble import bthome_v2
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
    # Why the payload was not decoded, or not to its end (the values before that stand).
    problem: str | None = None


def _number(payload: bthome_v2.Payload, name: str) -> float | None:
    value = payload.first(name)
    return value if isinstance(value, float) else None


def decode_bthome(
    payload: bytes,
    address: str,
    *,
    bindkey: bytes | None = None,
    rssi: int | None = None,
) -> BTHomeAdvert:
    """Decode the 0xFCD2 service data of one advertisement from `address`."""
    try:
        if bindkey is not None and not bthome_v2.DeviceInfo.of(payload).encrypted:
            return BTHomeAdvert(rssi_dbm=rssi, downgraded=True)
        decoded = bthome_v2.decode(payload, address, bindkey)
    except bthome_v2.Undecryptable as exc:
        return BTHomeAdvert(rssi_dbm=rssi, encrypted=True, undecryptable=True, problem=str(exc))
    except bthome_v2.BTHomeError as exc:
        return BTHomeAdvert(rssi_dbm=rssi, problem=str(exc))
    charging = decoded.first("battery_charging")
    # BTHome can carry values the contract refuses (0x4A voltage reaches 6553.5 V): such a
    # field is left out, not the whole reading.
    battery = Battery(
        pct=within("pct", _number(decoded, "battery")),
        voltage_v=within("voltage_v", _number(decoded, "voltage")),
        current_a=within("current_a", _number(decoded, "current")),
        temp_c=within("temp_c", _number(decoded, "temperature")),
        charging=charging if isinstance(charging, bool) else None,
    )
    packet = _number(decoded, "packet_id")
    return BTHomeAdvert(
        battery=None if battery == Battery() else battery,
        rssi_dbm=rssi,
        encrypted=decoded.info.encrypted,
        packet_id=None if packet is None else int(packet),
        problem=decoded.stopped,
    )
