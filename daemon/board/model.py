"""The officers' readiness board: the facts it judges and the verdict it shows.

Pure data, shared by the parts of the board: `fleetview.py` gathers what the collector
heard, `assignments.py` keeps the sign-out sheet and out-of-service marks, `judge.py`
turns one device's facts into a `Verdict`, and the HTTP API renders it with
`verdict_json`. Times are epoch milliseconds; "now" is always passed in (a controllable
clock), never read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Readiness(StrEnum):
    """One state per device, in the order the board lists them (ready devices first)."""

    READY = "ready"
    CHARGING = "charging"
    LOW = "low"
    IN_USE = "in_use"  # signed out to an officer
    OUT_OF_SERVICE = "out_of_service"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


# Never colour alone: the board always prints the words (LABEL) beside the colour.
COLOUR: dict[Readiness, str] = {
    Readiness.READY: "green",
    Readiness.CHARGING: "blue",
    Readiness.LOW: "amber",
    Readiness.IN_USE: "purple",
    Readiness.OUT_OF_SERVICE: "red",
    Readiness.OFFLINE: "grey",
    Readiness.UNKNOWN: "grey",
}
LABEL: dict[Readiness, str] = {
    Readiness.READY: "Ready",
    Readiness.CHARGING: "Charging",
    Readiness.LOW: "Low",
    Readiness.IN_USE: "In use",
    Readiness.OUT_OF_SERVICE: "Out of service",
    Readiness.OFFLINE: "Offline",
    Readiness.UNKNOWN: "Unknown",
}
ORDER: dict[Readiness, int] = {state: i for i, state in enumerate(Readiness)}


@dataclass(frozen=True, slots=True)
class Sample:
    """One charge observation, on the reading's own clock."""

    ts_ms: int
    pct: float
    charging: bool | None = None
    odometer_km: float | None = None


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest value of each field the board uses, merged across messages.

    A message may carry only some groups (a location-only OwnTracks message, a
    battery-only BLE advert): each field keeps its last known value. `ts_ms` is the
    reading's own time of the newest reading; `heard_ms` the collector's clock when it
    arrived (for "last heard" when a device clock is wrong).
    """

    ts_ms: int
    heard_ms: int
    pct: float | None = None
    charging: bool | None = None
    current_a: float | None = None
    temp_c: float | None = None
    state: str | None = None  # status.state: idle, riding, charging, docked, fault, off
    error_code: int | None = None
    range_km: float | None = None  # the device's own estimate (a Ninebot ESC reports one)
    odometer_km: float | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    rule: str
    severity: str  # "warning" | "critical"
    message: str
    since_ms: int
    acknowledged_by: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """A device signed out to an officer."""

    device: str
    officer: str  # who has it
    out_ms: int
    due_ms: int  # expected return
    by: str  # the signed-in user who recorded it (may be the officer)
    note: str = ""


@dataclass(frozen=True, slots=True)
class OutOfService:
    device: str
    reason: str
    by: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class LearnedRates:
    """A device's own rates (%/h) learned from its history; None: too little history."""

    drain_pct_per_h: float | None = None
    charge_pct_per_h: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """Everything known about one device at one moment: the judge's whole input."""

    device: str
    site: str
    kind: str
    name: str | None = None
    latest: Latest | None = None  # None: never heard
    history: tuple[Sample, ...] = ()  # oldest first, the last ~24 h, bounded
    alerts: tuple[OpenAlert, ...] = ()
    silenced: str | None = None  # reason of a device-wide silence in force ("in repair")
    assignment: Assignment | None = None
    out_of_service: OutOfService | None = None
    # Rates already learned from the history (FleetView caches them, so a list of 1,000
    # devices needs neither the histories nor a refit); None: the judge learns them itself.
    learned: LearnedRates | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What the alert engine and the sign-out sheet know, by device id: joined to what was
    heard when the facts are built (one object per device, not a copy per addition)."""

    alerts: Mapping[str, tuple[OpenAlert, ...]] = field(default_factory=dict)
    silenced: Mapping[str, str] = field(default_factory=dict)
    assignments: Mapping[str, Assignment] = field(default_factory=dict)
    out_of_service: Mapping[str, OutOfService] = field(default_factory=dict)


NO_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class Verdict:
    device: str
    site: str
    kind: str
    name: str | None
    state: Readiness
    reason: str  # one sentence a person reads in two seconds
    charge_pct: float | None = None
    charging: bool | None = None
    range_km: float | None = None  # vehicles
    runtime_h: float | None = None  # handhelds
    estimate: str | None = None  # "learned" (own drain) | "default" (per-kind default)
    needed_pct: float | None = None  # what the coming shift needs
    full_at_ms: int | None = None  # while charging
    ready_at_ms: int | None = None  # while charging below needed_pct: when it will be enough
    last_seen_ms: int | None = None  # the reading's own time
    stale: bool = False
    assignment: Assignment | None = None
    overdue: bool = False
    out_of_service: OutOfService | None = None
    alerts: tuple[OpenAlert, ...] = field(default_factory=tuple)


def sort_key(v: Verdict) -> tuple[int, float, str]:
    """Ready first; within a state, the fullest first."""
    return (ORDER[v.state], -(v.charge_pct or 0.0), v.device)
