"""What a driver produces: typed readings, free of any transport or wire format.

The groups mirror the v1 telemetry contract (battery, location, status) field
for field and unit for unit, so the agent maps them one to one; a driver
fills what its device can tell and leaves the rest None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# The v1 contract's ranges (daemon/wire.py enforces them; drivers cannot import it, and a test
# keeps the two equal). The agent refuses a whole reading for one value outside them, so a
# driver whose device sends such a value leaves that field None instead.
LIMITS: dict[str, tuple[float, float]] = {
    "pct": (0, 100),
    "voltage_v": (0, 200),
    "current_a": (-1000, 1000),
    "temp_c": (-60, 150),
    "health_pct": (0, 100),
    "rssi_dbm": (-150, 20),
}
FIRMWARE_MAX = 32
_FIRMWARE_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - set("\"'\\")


def within(name: str, value: float | None) -> float | None:
    """`value` if it is a finite number inside the contract's range for `name`, else None."""
    if value is None or not math.isfinite(value):
        return None
    low, high = LIMITS[name]
    return value if low <= value <= high else None


def firmware_label(text: str | None) -> str | None:
    """A device's free-text version as the contract takes it: printable ASCII without quotes
    or backslashes, at most 32 characters (others dropped); None when nothing is left."""
    if text is None:
        return None
    kept = "".join(ch for ch in text if ch in _FIRMWARE_CHARS).strip()
    return kept[:FIRMWARE_MAX].strip() or None


class State(StrEnum):
    IDLE = "idle"
    RIDING = "riding"
    CHARGING = "charging"
    DOCKED = "docked"
    FAULT = "fault"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Battery:
    pct: float | None = None  # state of charge, 0-100
    voltage_v: float | None = None
    current_a: float | None = None  # negative while discharging
    temp_c: float | None = None
    charging: bool | None = None
    health_pct: float | None = None  # capacity now / design capacity, 0-100


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_kmh: float | None = None  # negative while reversing
    heading_deg: float | None = None


@dataclass(frozen=True, slots=True)
class Status:
    state: State | None = None
    odometer_km: float | None = None
    range_km: float | None = None
    error_code: int | None = None
    locked: bool | None = None
    rssi_dbm: int | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one fleet device, at `ts_ms` (epoch ms, the agent's clock)."""

    device: str
    ts_ms: int
    battery: Battery | None = None
    location: Location | None = None
    status: Status | None = None
