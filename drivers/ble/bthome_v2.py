"""BTHome v2 service data (16-bit UUID 0xFCD2): bytes in, typed values out.

Written from the format (bthome.io/format; the project's protocol notes §3.2):

    device-info byte | [MAC, 6 bytes reversed] | objects          (plaintext)
    device-info byte | [MAC] | AES-CCM(objects) | counter(4) | MIC(4)   (encrypted)

device-info: bit 0 encrypted, bit 1 MAC included, bit 2 trigger-based, bits 5-7 version
(2). Objects are `id | value` pairs, values little-endian, their meaning and size given by
the id alone (the OBJECTS table); text and raw objects carry a length byte first.

Pure: no bleak, no I/O, no logging. Any bytes in; the only exceptions out are
`BTHomeError` and its `Undecryptable`, each saying what, where and why (and ValueError
for a caller's bad argument: a bind key that is not 16 bytes, an address that is no MAC). An object whose
size cannot be known (an id outside the table) ends the decoding: the values before it
stand, and `Payload.stopped` says why the rest was not read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

SERVICE_UUID16: Final = 0xFCD2
VERSION: Final = 2
MIC_BYTES: Final = 4
COUNTER_BYTES: Final = 4
MAC_BYTES: Final = 6
KEY_BYTES: Final = 16
LENGTH_PREFIXED: Final = -1  # a Meaning.size: the value's length is its first byte

Value = float | bool


class BTHomeError(ValueError):
    """Service data that is not (or not entirely) a BTHome v2 payload; the message says why."""


class Undecryptable(BTHomeError):
    """An encrypted payload without a bind key, or one the key does not open."""


@dataclass(frozen=True, slots=True)
class Meaning:
    """What an object id stands for: its value's size in bytes and how to read it."""

    name: str
    size: int
    signed: bool = False
    factor: float = 1.0
    kind: Literal["number", "binary", "skip"] = "number"

    @property
    def decimals(self) -> int:
        # A value is rounded to its factor's resolution: 2397 x 0.01 is 23.97, not
        # 23.970000000000002; 0.35 steps (object 0x58) keep one decimal.
        return max(0, -math.floor(math.log10(self.factor)))

    def read(self, raw: bytes) -> Value | None:
        if self.kind == "skip":
            return None
        number = int.from_bytes(raw, "little", signed=self.signed)
        if self.kind == "binary":
            return number != 0
        if self.factor == 1:
            return float(number)
        return round(number * self.factor, self.decimals)


def _num(name: str, size: int, factor: float = 1.0, *, signed: bool = False) -> Meaning:
    return Meaning(name, size, signed, factor)


def _bin(name: str) -> Meaning:
    return Meaning(name, 1, kind="binary")


def _skip(name: str, size: int) -> Meaning:
    # Known size, no value we report: buttons and dimmer events, device information.
    return Meaning(name, size, kind="skip")


# bthome.io/format, object ids by number. Every id here has a fixed (or length-prefixed)
# size, so decoding can step over the ones the drivers do not use.
OBJECTS: Final[Mapping[int, Meaning]] = {
    0x00: _num("packet_id", 1),
    0x01: _num("battery", 1),
    0x02: _num("temperature", 2, 0.01, signed=True),
    0x03: _num("humidity", 2, 0.01),
    0x04: _num("pressure", 3, 0.01),
    0x05: _num("illuminance", 3, 0.01),
    0x06: _num("mass_kg", 2, 0.01),
    0x07: _num("mass_lb", 2, 0.01),
    0x08: _num("dewpoint", 2, 0.01, signed=True),
    0x09: _num("count", 1),
    0x0A: _num("energy", 3, 0.001),
    0x0B: _num("power", 3, 0.01),
    0x0C: _num("voltage", 2, 0.001),
    0x0D: _num("pm25", 2),
    0x0E: _num("pm10", 2),
    0x0F: _bin("generic"),
    0x10: _bin("power_on"),
    0x11: _bin("opening"),
    0x12: _num("co2", 2),
    0x13: _num("tvoc", 2),
    0x14: _num("moisture", 2, 0.01),
    0x15: _bin("battery_low"),
    0x16: _bin("battery_charging"),
    0x17: _bin("carbon_monoxide"),
    0x18: _bin("cold"),
    0x19: _bin("connectivity"),
    0x1A: _bin("door"),
    0x1B: _bin("garage_door"),
    0x1C: _bin("gas"),
    0x1D: _bin("heat"),
    0x1E: _bin("light"),
    0x1F: _bin("lock"),
    0x20: _bin("moisture_wet"),
    0x21: _bin("motion"),
    0x22: _bin("moving"),
    0x23: _bin("occupancy"),
    0x24: _bin("plug"),
    0x25: _bin("presence"),
    0x26: _bin("problem"),
    0x27: _bin("running"),
    0x28: _bin("safety"),
    0x29: _bin("smoke"),
    0x2A: _bin("sound"),
    0x2B: _bin("tamper"),
    0x2C: _bin("vibration"),
    0x2D: _bin("window"),
    0x2E: _num("humidity", 1),
    0x2F: _num("moisture", 1),
    0x3A: _skip("button", 1),
    0x3C: _skip("dimmer", 2),
    0x3D: _num("count", 2),
    0x3E: _num("count", 4),
    0x3F: _num("rotation", 2, 0.1, signed=True),
    0x40: _num("distance_mm", 2),
    0x41: _num("distance_m", 2, 0.1),
    0x42: _num("duration", 3, 0.001),
    0x43: _num("current", 2, 0.001),
    0x44: _num("speed", 2, 0.01),
    0x45: _num("temperature", 2, 0.1, signed=True),
    0x46: _num("uv_index", 1, 0.1),
    0x47: _num("volume_l", 2, 0.1),
    0x48: _num("volume_ml", 2),
    0x49: _num("volume_flow_rate", 2, 0.001),
    0x4A: _num("voltage", 2, 0.1),
    0x4B: _num("gas", 3, 0.001),
    0x4C: _num("gas", 4, 0.001),
    0x4D: _num("energy", 4, 0.001),
    0x4E: _num("volume_l", 4, 0.001),
    0x4F: _num("water", 4, 0.001),
    0x50: _num("timestamp", 4),
    0x51: _num("acceleration", 2, 0.001),
    0x52: _num("gyroscope", 2, 0.001),
    0x53: _skip("text", LENGTH_PREFIXED),
    0x54: _skip("raw", LENGTH_PREFIXED),
    0x55: _num("volume_storage", 4, 0.001),
    0x56: _num("conductivity", 2),
    0x57: _num("temperature", 1, signed=True),
    0x58: _num("temperature", 1, 0.35, signed=True),
    0x59: _num("count", 1, signed=True),
    0x5A: _num("count", 2, signed=True),
    0x5B: _num("count", 4, signed=True),
    0x5C: _num("power", 4, 0.01, signed=True),
    0x5D: _num("current", 2, 0.001, signed=True),
    0x5E: _num("direction", 2, 0.01),
    0x5F: _num("precipitation", 2, 0.1),
    0x60: _num("channel", 1),
    0x61: _num("rotational_speed", 2),
    0x62: _num("speed", 4, 0.000001, signed=True),
    0x63: _num("acceleration", 4, 0.000001, signed=True),
    0x64: _num("light_level", 1),
    0x65: _skip("settings_revision", 1),
    0xF0: _skip("device_type", 2),
    0xF1: _skip("firmware_version", 4),
    0xF2: _skip("firmware_version", 3),
}


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The payload's first byte."""

    encrypted: bool
    mac_included: bool
    trigger_based: bool
    version: int

    @classmethod
    def of(cls, payload: bytes) -> DeviceInfo:
        if not payload:
            raise BTHomeError("empty service data: no device-info byte")
        info = payload[0]
        return cls(bool(info & 0x01), bool(info & 0x02), bool(info & 0x04), info >> 5)


@dataclass(frozen=True, slots=True)
class Measurement:
    object_id: int
    name: str
    value: Value


@dataclass(frozen=True, slots=True)
class Payload:
    """One decoded payload, its measurements in the order sent."""

    info: DeviceInfo
    measurements: tuple[Measurement, ...]
    stopped: str | None = None  # why the objects were not read to the end

    def first(self, name: str) -> Value | None:
        """The first measurement called `name` (a device may repeat an object)."""
        return next((m.value for m in self.measurements if m.name == name), None)


def mac_bytes(address: str) -> bytes:
    """The 6 bytes of "A4:C1:38:8D:18:B2" in written order (the order of the nonce)."""
    raw = bytes.fromhex(address.replace(":", "").replace("-", ""))
    if len(raw) != MAC_BYTES:
        raise ValueError(f"not a MAC address: {address!r}")
    return raw


def decode(payload: bytes, address: str, bindkey: bytes | None = None) -> Payload:
    """Decode the 0xFCD2 service data `payload` advertised by `address`.

    `bindkey` opens encrypted payloads (a plaintext one is decoded whether or not a key is
    given: refusing a downgrade is the caller's policy). Raises BTHomeError (Undecryptable
    for encryption without the right key) when nothing can be read.
    """
    if bindkey is not None and len(bindkey) != KEY_BYTES:
        raise ValueError(f"a BTHome bind key has {KEY_BYTES} bytes, not {len(bindkey)}")
    info = DeviceInfo.of(payload)
    if info.version != VERSION:
        raise BTHomeError(
            f"device-info byte 0x{payload[0]:02X}: BTHome version {info.version}, "
            f"only version {VERSION} is decoded"
        )
    start = 1
    nonce_mac = mac_bytes(address)
    if info.mac_included:
        start += MAC_BYTES
        if len(payload) < start:
            raise BTHomeError(
                f"device-info byte 0x{payload[0]:02X} announces a MAC address, "
                f"but the payload has only {len(payload) - 1} bytes after it"
            )
        # Sent reversed (little-endian) like every multi-byte field.
        nonce_mac = payload[1:start][::-1]
    body = payload[start:]
    if info.encrypted:
        body = _decrypt(body, nonce_mac, payload[0], bindkey)
    measurements, stopped = _objects(body)
    return Payload(info, measurements, stopped)


def _decrypt(sealed: bytes, mac: bytes, info: int, bindkey: bytes | None) -> bytes:
    if bindkey is None:
        raise Undecryptable("encrypted payload and no bind key")
    if len(sealed) < COUNTER_BYTES + MIC_BYTES:
        raise Undecryptable(
            f"encrypted payload of {len(sealed)} bytes after the header: shorter than "
            f"its counter and MIC ({COUNTER_BYTES + MIC_BYTES})"
        )
    counter = sealed[-MIC_BYTES - COUNTER_BYTES : -MIC_BYTES]
    nonce = mac + SERVICE_UUID16.to_bytes(2, "little") + bytes([info]) + counter
    ciphertext = sealed[: -MIC_BYTES - COUNTER_BYTES] + sealed[-MIC_BYTES:]
    try:
        return AESCCM(bindkey, tag_length=MIC_BYTES).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise Undecryptable("the bind key does not decrypt it (MIC mismatch)") from None


def _objects(body: bytes) -> tuple[tuple[Measurement, ...], str | None]:
    """The measurements in `body`, and why reading stopped early (None if it did not)."""
    out: list[Measurement] = []
    at = 0
    while at < len(body):
        ident = body[at]
        meaning = OBJECTS.get(ident)
        start, size = at + 1, 0 if meaning is None else meaning.size
        if meaning is None:
            why = f"unknown id, so of unknown size: the last {len(body) - at} bytes not read"
        elif size == LENGTH_PREFIXED and start >= len(body):
            why = "its length byte is missing"
        else:
            if size == LENGTH_PREFIXED:
                size, start = body[start], start + 1
            if start + size <= len(body):
                value = meaning.read(body[start : start + size])
                if value is not None:
                    out.append(Measurement(ident, meaning.name, value))
                at = start + size
                continue
            why = f"{size} value bytes needed, {len(body) - start} left"
        return tuple(out), f"object 0x{ident:02X} at byte {at} of the objects: {why}"
    return tuple(out), None
