"""What a driver produces: typed readings, free of any transport or wire format.

The groups mirror the v1 telemetry contract (battery, location, status) field
for field and unit for unit, so the agent maps them one to one; a driver
fills what its device can tell and leaves the rest None.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
