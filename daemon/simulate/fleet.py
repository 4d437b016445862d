"""Who is in the simulated fleet: device ids, sites, kinds and how each one talks.

Registry devices come first, with their own site and kind (a registry Segway
fills a Segway place, any other kind a handheld place). The remaining places
get generated ids `sw-01..` / `hh-01..` (three digits past 99, skipping ids
the registry already uses) and alternate between the configured site and the
other West Haven site. With OwnTracks on, registry devices that have an
OwnTracks pair and every second generated handheld publish OwnTracks location
JSON instead of fleet telemetry; the generated ones live at the configured
site, because the collector places an unregistered OwnTracks device there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SEGWAY_KIND = "segway"
HANDHELD_KIND = "handheld"
KNOWN_SITES = ("allingtown", "westhaven")


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """The parts of a configured device the simulator uses."""

    id: str
    kind: str
    site: str | None = None
    owntracks: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """One simulated device and its place in the run."""

    device: str
    site: str
    site_index: int  # 0 = the configured site, 1 = the other one (picks the patrol loop)
    kind: str
    segway: bool
    owntracks: str | None  # "user/device" when it publishes OwnTracks, else None


def sites_for(first_site: str) -> tuple[str, str]:
    """The configured site and the other West Haven site the generated devices split over."""
    other = next(s for s in KNOWN_SITES if s != first_site)
    return first_site, other


def _ids(prefix: str, count: int, taken: set[str]) -> list[str]:
    width = 3 if count > 99 else 2
    out: list[str] = []
    n = 0
    while len(out) < count:
        n += 1
        candidate = f"{prefix}-{n:0{width}d}"
        if candidate not in taken:
            out.append(candidate)
    return out


def plan_fleet(
    *,
    segways: int,
    handhelds: int,
    first_site: str,
    registry: Sequence[RegistryEntry] = (),
    owntracks: bool = False,
) -> list[Member]:
    """The fleet of a run: `segways` Segways and `handhelds` handhelds (see the module docstring)."""
    if segways < 0 or handhelds < 0:
        raise ValueError("device counts must not be negative")
    sites = sites_for(first_site)
    taken = {entry.id for entry in registry}
    members: list[Member] = []

    def site_index(site: str) -> int:
        return sites.index(site) if site in sites else len(members) % 2

    reg_segways = [e for e in registry if e.kind == SEGWAY_KIND][:segways]
    reg_others = [e for e in registry if e.kind != SEGWAY_KIND][:handhelds]
    for entry in (*reg_segways, *reg_others):
        site = entry.site or first_site
        tracks = entry.owntracks if owntracks and entry.kind != SEGWAY_KIND else None
        members.append(
            Member(entry.id, site, site_index(site), entry.kind, entry.kind == SEGWAY_KIND, tracks)
        )
    for i, dev in enumerate(_ids("sw", segways - len(reg_segways), taken)):
        members.append(Member(dev, sites[i % 2], i % 2, SEGWAY_KIND, True, None))
    for i, dev in enumerate(_ids("hh", handhelds - len(reg_others), taken)):
        if owntracks and i % 2 == 1:
            user = "officer-" + dev.removeprefix("hh-")
            members.append(Member(dev, first_site, 0, HANDHELD_KIND, False, f"{user}/{dev}"))
        else:
            members.append(Member(dev, sites[i % 2], i % 2, HANDHELD_KIND, False, None))
    return members
