"""Where the simulated fleet lives: two West Haven, CT sub-stations and their patrol loops.

Waypoints are hand-placed along real streets (to within a block or so, good
enough for a map panel, not for navigation). Each loop starts and ends at its
station, so "finish the lap" is how a patrol returns to the dock.

- Downtown West Haven (site `westhaven`): the station by the green (City Hall,
  41.2706 N 72.9470 W); the loop goes up Campbell Ave to Elm St, east on Elm,
  down First Ave to the beach, west along Captain Thomas Blvd and back up
  Campbell Ave past the green (about 5 km).
- Allingtown (site `allingtown`): the sub-station area where Campbell Ave
  meets Boston Post Rd, about 2 km north-west of the green; the loop runs west
  on Boston Post Rd past the University of New Haven, through the residential
  streets to the south, and back east towards the West River (about 5 km).

Distances use an equirectangular projection around each station: the error
over a few kilometres is far below GPS noise and it costs two multiplications.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Station:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Fix:
    """A point on a route with the direction of travel there."""

    lat: float
    lon: float
    heading_deg: float


class Route:
    """A closed loop of waypoints, walked by distance along it (metres from the start)."""

    def __init__(self, station: Station, waypoints: list[tuple[float, float]]) -> None:
        if len(waypoints) < 3:
            raise ValueError("a loop needs at least three waypoints")
        self.station = station
        self._lat0 = station.lat
        self._m_per_deg_lat = math.radians(1.0) * EARTH_RADIUS_M
        self._m_per_deg_lon = self._m_per_deg_lat * math.cos(math.radians(station.lat))
        points = [*waypoints, waypoints[0]]
        self._xy = [self._to_xy(lat, lon) for lat, lon in points]
        self._cum = [0.0]
        for (x0, y0), (x1, y1) in itertools.pairwise(self._xy):
            self._cum.append(self._cum[-1] + math.hypot(x1 - x0, y1 - y0))
        self.length_m = self._cum[-1]

    def _to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (
            (lon - self.station.lon) * self._m_per_deg_lon,
            (lat - self.station.lat) * self._m_per_deg_lat,
        )

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return (
            self.station.lat + y / self._m_per_deg_lat,
            self.station.lon + x / self._m_per_deg_lon,
        )

    def at(self, distance_m: float, direction: int = 1) -> Fix:
        """The point `distance_m` along the loop; direction -1 walks it the other way round."""
        s = distance_m % self.length_m
        if direction < 0:
            s = self.length_m - s
        # Loops have a dozen segments: a linear scan beats bisect's call overhead.
        i = 0
        cum = self._cum
        while i < len(cum) - 2 and cum[i + 1] < s:
            i += 1
        (x0, y0), (x1, y1) = self._xy[i], self._xy[i + 1]
        seg = cum[i + 1] - cum[i]
        f = (s - cum[i]) / seg if seg > 0 else 0.0
        x, y = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        dx, dy = (x1 - x0, y1 - y0) if direction > 0 else (x0 - x1, y0 - y1)
        heading = math.degrees(math.atan2(dx, dy)) % 360.0
        lat, lon = self.to_latlon(x, y)
        return Fix(lat, lon, heading)

    def offset(self, lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
        """`lat, lon` moved by a few metres (GPS noise, dock slots)."""
        return lat + north_m / self._m_per_deg_lat, lon + east_m / self._m_per_deg_lon

    def distance_from_station_m(self, lat: float, lon: float) -> float:
        x, y = self._to_xy(lat, lon)
        return math.hypot(x, y)


DOWNTOWN = Station("West Haven downtown sub-station (the green)", 41.2706, -72.9470)
ALLINGTOWN = Station("Allingtown sub-station (Campbell Ave / Boston Post Rd)", 41.2880, -72.9570)

DOWNTOWN_LOOP = Route(
    DOWNTOWN,
    [
        (41.2706, -72.9470),  # station, Main St side of the green
        (41.2728, -72.9478),  # Campbell Ave along the green
        (41.2748, -72.9484),  # Campbell Ave at Elm St
        (41.2752, -72.9440),  # Elm St
        (41.2756, -72.9398),  # Elm St at First Ave
        (41.2700, -72.9385),  # First Ave
        (41.2640, -72.9370),  # First Ave towards the beach
        (41.2615, -72.9405),  # Captain Thomas Blvd, Bradley Point
        (41.2600, -72.9450),  # Captain Thomas Blvd
        (41.2592, -72.9490),  # Captain Thomas Blvd at Campbell Ave
        (41.2630, -72.9488),  # Campbell Ave northbound
        (41.2668, -72.9480),  # Campbell Ave towards the green
    ],
)

ALLINGTOWN_LOOP = Route(
    ALLINGTOWN,
    [
        (41.2880, -72.9570),  # station, Campbell Ave / Boston Post Rd
        (41.2895, -72.9615),  # Boston Post Rd west
        (41.2905, -72.9665),  # Boston Post Rd by the University of New Haven
        (41.2860, -72.9690),  # south through the side streets
        (41.2815, -72.9675),
        (41.2790, -72.9620),
        (41.2800, -72.9560),  # Campbell Ave
        (41.2815, -72.9515),
        (41.2870, -72.9490),  # Boston Post Rd east, towards the West River
        (41.2900, -72.9475),
        (41.2925, -72.9520),
        (41.2905, -72.9545),
    ],
)

# Known site ids and their loops; any other configured site borrows one of these.
LOOPS: dict[str, Route] = {"westhaven": DOWNTOWN_LOOP, "allingtown": ALLINGTOWN_LOOP}


def route_for(site: str, site_index: int) -> Route:
    """The loop patrolled from `site`: by name, else by the site's position in the run."""
    route = LOOPS.get(site)
    if route is not None:
        return route
    return (ALLINGTOWN_LOOP, DOWNTOWN_LOOP)[site_index % 2]
