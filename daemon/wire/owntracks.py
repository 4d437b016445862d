"""OwnTracks `_type: location` messages as handheld readings (the app is not ours: we take the
keys we use, ignore the many others, and hold them to the contract's own ranges)."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Interval
from pydantic import BaseModel, ConfigDict, Field

from fleet.daemon.wire.envelope import Timestamp
from fleet.drivers.contract import between
from fleet.drivers.readings import LIMITS, Battery, Location


def _as(field: str, group: str = "location") -> Interval:
    """The range of the contract field this OwnTracks key becomes."""
    return between(*LIMITS[group, field])


class OwnTracksLocation(BaseModel):
    """The keys of an OwnTracks ``_type: location`` message we use; the app sends many more."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    batt: Annotated[float | None, _as("pct", "battery")] = None
    bs: int | None = Field(None, ge=0, le=3)
    lat: Annotated[float, _as("lat")]
    lon: Annotated[float, _as("lon")]
    acc: Annotated[float | None, _as("accuracy_m")] = None
    vel: Annotated[float | None, _as("speed_kmh")] = None
    cog: Annotated[float | None, _as("heading_deg")] = None
    tst: Timestamp

    def groups(self) -> tuple[Battery | None, Location]:
        """The contract's groups: already in range, so built without validating again."""
        return owntracks_groups(
            self.batt, self.bs, self.lat, self.lon, self.acc, self.vel, self.cog
        )


def owntracks_groups(
    batt: float | None,
    bs: int | None,
    lat: float,
    lon: float,
    acc: float | None,
    vel: float | None,
    cog: float | None,
) -> tuple[Battery | None, Location]:
    """The mapping to the contract's groups, shared by the pydantic and the msgspec path."""
    charging = None if bs is None else _CHARGING[bs]
    battery = None
    if batt is not None or charging is not None:
        battery = Battery(pct=batt, charging=charging)
    location = Location(lat=lat, lon=lon, accuracy_m=acc, speed_kmh=vel, heading_deg=cog)
    return battery, location


# bs: 0 unknown, 1 unplugged, 2 charging, 3 full (still on the charger).
_CHARGING: dict[int, bool | None] = {0: None, 1: False, 2: True, 3: True}
