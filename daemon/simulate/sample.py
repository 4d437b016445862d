"""What a simulated device is asked to do, and what it reports: plain values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["idle", "riding", "charging", "docked", "fault", "off"]


@dataclass(frozen=True, slots=True)
class Condition:
    """A state requested for a device (faults on request); None/False = behave normally."""

    fault_code: int | None = None
    unplugged: bool = False
    low_battery_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading as the device would report it, already rounded like a device would."""

    device: str
    site: str
    kind: str
    seq: int
    t: float
    pct: float
    voltage_v: float
    current_a: float
    temp_c: float
    charging: bool
    health_pct: float
    fix: bool  # False: a handheld in its cradle indoors reports no location
    lat: float
    lon: float
    accuracy_m: float
    speed_kmh: float
    heading_deg: float
    state: State
    odometer_km: float | None
    range_km: float | None
    error_code: int
    locked: bool | None
    rssi_dbm: int
    firmware: str
    # The vehicle's own speedometer (status.speed_kmh): segways only; None for a handheld.
    speedometer_kmh: float | None = None
