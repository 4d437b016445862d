"""What a driver reports: typed readings, free of any transport or wire format.

The groups below are the v1 telemetry contract's groups (battery, location, status): their
field names, types, units and ranges are defined here and nowhere else. A driver fills what
its device can tell and leaves the rest None; the agent sends these very objects, and the
collector validates each received message into them (pydantic enforces the `between` ranges
and the string rules declared on the fields).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Annotated

from annotated_types import Interval
from pydantic import Strict, StringConstraints

from fleet.drivers.contract import between

FIRMWARE_MAX = 32
_FIRMWARE_CHARS = r" !#-&(-\[\]-~"  # printable ASCII without " ' \ (safe in any query)
FIRMWARE_RULE = "printable ASCII without quotes or backslashes"
_FIRMWARE = StringConstraints(
    min_length=1, max_length=FIRMWARE_MAX, pattern=f"^[{_FIRMWARE_CHARS}]*$"
)
_NOT_FIRMWARE = re.compile(f"[^{_FIRMWARE_CHARS}]")

PACK_IDS_MAX = 64
# The firmware rule without space and comma: the comma separates the packs' serials.
_SERIAL_CHARS = r"!#-&(-+\--\[\]-~"
PACK_IDS_RULE = (
    "pack serial numbers separated by commas: printable ASCII without spaces, quotes or "
    "backslashes, no empty serial"
)
_PACK_IDS = StringConstraints(
    min_length=1,
    max_length=PACK_IDS_MAX,
    pattern=f"^[{_SERIAL_CHARS}]+(,[{_SERIAL_CHARS}]+)*$",
)
_NOT_SERIAL = re.compile(f"[^{_SERIAL_CHARS}]")
UNKNOWN_PACK = "?"


class State(StrEnum):
    IDLE = "idle"
    RIDING = "riding"
    CHARGING = "charging"
    DOCKED = "docked"
    FAULT = "fault"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Battery:
    pct: Annotated[float | None, between(0, 100)] = None  # state of charge, %
    voltage_v: Annotated[float | None, between(0, 200)] = None
    current_a: Annotated[float | None, between(-1000, 1000)] = None  # negative: discharging
    temp_c: Annotated[float | None, between(-60, 150)] = None
    charging: bool | None = None
    health_pct: Annotated[float | None, between(0, 100)] = None  # capacity / design capacity
    # Added to v1 (optional, additive). Max - min cell (or cell-group) voltage: pack balance.
    cell_spread_v: Annotated[float | None, between(0, 10)] = None
    # The packs' serial numbers in the vehicle's pack order ("C01061400098,C01061400117"), so a
    # pack moved between vehicles can be followed; see `pack_ids_label`.
    pack_ids: Annotated[str | None, _PACK_IDS] = None


@dataclass(frozen=True, slots=True)
class Location:
    lat: Annotated[float, between(-90, 90)]  # WGS84 degrees
    lon: Annotated[float, between(-180, 180)]
    accuracy_m: Annotated[float | None, between(0, 100_000)] = None
    speed_kmh: Annotated[float | None, between(-100, 400)] = None  # negative: reversing
    heading_deg: Annotated[float | None, between(0, 360)] = None


@dataclass(frozen=True, slots=True)
class Status:
    # Not strict: a sender may give the value ("riding") as well as the member (State.RIDING).
    state: Annotated[State | None, Strict(False)] = None
    odometer_km: Annotated[float | None, between(0, 10**7)] = None
    range_km: Annotated[float | None, between(0, 10_000)] = None
    error_code: Annotated[int | None, between(0, 65535)] = None
    locked: bool | None = None
    rssi_dbm: Annotated[int | None, between(-150, 20)] = None
    firmware: Annotated[str | None, _FIRMWARE] = None
    # Added to v1 (optional, additive): the vehicle's own speedometer, negative = reversing.
    # Same range as location.speed_kmh, but no position needed; a GPS reports location's.
    speed_kmh: Annotated[float | None, between(-100, 400)] = None


GROUPS: dict[str, type[Battery | Location | Status]] = {
    "battery": Battery,
    "location": Location,
    "status": Status,
}
"""The contract's groups by name: also the InfluxDB measurements and the JSON keys."""

# The contract has no empty group (a group is left out instead). Location has no empty form:
# lat and lon are required. Compared by value, so no field-by-field walk is needed.
EMPTY_GROUPS = (Battery(), Status())


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of one fleet device, at `ts_ms` (epoch ms, the agent's clock)."""

    device: str
    ts_ms: int
    battery: Battery | None = None
    location: Location | None = None
    status: Status | None = None


def field_names(group: type[Battery | Location | Status]) -> tuple[str, ...]:
    """The group's fields in contract order (the JSON order)."""
    return tuple(f.name for f in fields(group))


def _limits() -> dict[tuple[str, str], tuple[float, float]]:
    """(group, field) -> (low, high), read back from the `between` markers of every group."""
    found: dict[tuple[str, str], tuple[float, float]] = {}
    for group_name, group in GROUPS.items():
        for name, hint in typing.get_type_hints(group, include_extras=True).items():
            for marker in getattr(hint, "__metadata__", ()):
                if isinstance(marker, Interval):
                    # Kept as written (int or float): the error sentences quote them.
                    bounds = typing.cast("tuple[float, float]", (marker.ge, marker.le))
                    found[group_name, name] = bounds
    return found


# Keyed by (group, field): a field name may recur in two groups (speed_kmh in location and
# status) and must not silently take the other group's range if the two ever differ.
LIMITS = _limits()
_GROUPS_OF: dict[str, list[str]] = {}  # field name -> the groups that have it, for `within`
for _group, _name in LIMITS:
    _GROUPS_OF.setdefault(_name, []).append(_group)


def within(name: str, value: float | None, *, group: str | None = None) -> float | None:
    """`value` if it is a finite number inside the contract's range for `group`.`name`, else None.

    The agent refuses a whole reading for one value outside the contract, so a driver whose
    device sends such a value leaves that field None instead. `group` may be left out for a
    field name that only one group has; a name in several groups (speed_kmh) needs it.
    """
    if group is None:
        owners = _GROUPS_OF.get(name)
        if owners is None:
            raise KeyError(f"{name!r} is no ranged field of the contract")
        if len(owners) > 1:
            raise KeyError(f"{name!r} is in {' and '.join(owners)}: say which with group=")
        group = owners[0]
    if value is None or not math.isfinite(value):
        return None
    low, high = LIMITS[group, name]
    return value if low <= value <= high else None


def firmware_label(text: str | None) -> str | None:
    """A device's free-text version as the contract takes it: printable ASCII without quotes
    or backslashes, at most 32 characters (others dropped); None when nothing is left."""
    if text is None:
        return None
    kept = _NOT_FIRMWARE.sub("", text).strip()
    return kept[:FIRMWARE_MAX].strip() or None


def pack_ids_label(serials: Sequence[str | None]) -> str | None:
    """The packs' serials, in the vehicle's pack order, as `Battery.pack_ids` takes them.

    Characters outside the rule are dropped from each serial; a pack whose serial is unknown
    (None or nothing left) keeps its place as "?", so "A,?" still says which pack is which.
    None when no serial is known, or when the list is longer than 64 characters: a cut list
    would name a pack that is not there.
    """
    kept = [_NOT_SERIAL.sub("", s or "") or UNKNOWN_PACK for s in serials]
    if all(k == UNKNOWN_PACK for k in kept):
        return None
    label = ",".join(kept)
    return label if len(label) <= PACK_IDS_MAX else None
