"""Pure behaviour of one simulated device: shifts, movement and battery, advanced in simulated time.

No I/O, no clock, no wire format: `Device.advance(t)` moves the device to
simulated epoch second `t` and `Device.read()` returns what it would report
now as a `Sample`. Everything random comes from the device's own
`random.Random`, seeded from the run seed and the device id, so a run is
reproducible device by device whatever else is in the fleet.

A device lives through shifts:

    DOCKED (on the charger) -> PREP (Segway pre-check, unplugged, idle)
      -> PATROL (ride/walk the site's loop, with stops) -> RETURN (finish the
      lap back to the station) -> DOCKED ...

A patrol ends after its planned length or early when the battery falls to
the profile's return level; a shift starts only once the battery is charged
enough. Some devices are reserves and stay on the dock (a few Segways are
switched off instead). Conditions requested on the command line pin a device:
`fault` (state fault with an error code, standing where it broke down),
`unplugged` (docked, charger not connected, slowly draining) and
`low_battery` (starts at that charge; a Segway stands parked outside, a
handheld stays out on foot patrol).

Reported state: on the charger `charging` (or `docked` when full, charging
still true), on the dock unplugged `docked` with charging false, moving
`riding` (a handheld only when its officer rides along, else `idle`),
standing `idle`, `off`, `fault`. A handheld in its cradle has no GPS fix
indoors and reports no location; Segway docks do report theirs.
"""

from __future__ import annotations

import enum
import math
import random

from fleet.daemon.simulate import battery
from fleet.daemon.simulate.geo import Route
from fleet.daemon.simulate.profiles import Profile
from fleet.daemon.simulate.sample import Condition, Sample, State

MAX_MOVE_STEP_S = 30.0  # speed wanders and laps end at this resolution
INDOOR_C = 20.0  # the docks are inside the station
INF = math.inf


class Phase(enum.Enum):
    DOCKED = "docked"
    PREP = "prep"
    PATROL = "patrol"
    RETURN = "return"
    PARKED = "parked"
    OFF = "off"
    FAULT = "fault"


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


class Device:
    """One simulated Segway or handheld (see the module docstring for its life)."""

    def __init__(
        self,
        device_id: str,
        site: str,
        kind: str,
        profile: Profile,
        route: Route,
        *,
        seed: int,
        t0: float,
        condition: Condition | None = None,
    ) -> None:
        self.id = device_id
        self.site = site
        self.kind = kind
        self.profile = profile
        self.route = route
        self.rng = rng = random.Random(f"{seed}/{device_id}")
        self.t = t0
        self.seq = 0
        self.direction = rng.choice((1, -1))
        self.health = rng.uniform(86.0, 99.5)
        self.wear_per_cycle = rng.uniform(0.01, 0.04)  # health lost per full charge
        self.odometer_km = rng.uniform(40.0, 3500.0) if profile.segway else 0.0
        self.firmware = rng.choice(profile.firmware)
        self.rssi_base = rng.uniform(-72.0, -52.0)
        self.dock_heading = rng.choice((0.0, 90.0, 180.0, 270.0))
        station = route.station
        self.dock_lat, self.dock_lon = route.offset(
            station.lat, station.lon, rng.uniform(-12.0, 12.0), rng.uniform(-8.0, 8.0)
        )
        self.temp = INDOOR_C + rng.uniform(-1.0, 1.0)
        self.error_code = 0
        self.endless = False
        self.plugged = False
        self.pct = 100.0
        self.s = 0.0  # metres travelled along the loop since leaving the dock
        self.lap_end = 0.0
        self.speed = 0.0
        self.target_speed = 0.0
        self.speed_range = profile.speed_kmh
        self.ride_along = False
        self.heading = self.dock_heading
        self.until = INF
        self.patrol_end = INF
        self.next_stop = INF
        self.stopped_until = -INF
        self.phase = Phase.DOCKED
        self._initial_state(condition or Condition())

    # -- set-up --------------------------------------------------------------

    def _initial_state(self, cond: Condition) -> None:
        rng, p, t = self.rng, self.profile, self.t
        if cond.fault_code is not None:
            self.phase = Phase.FAULT
            self.error_code = cond.fault_code
            self.pct = rng.uniform(40.0, 90.0)
            self.s = rng.uniform(0.0, self.route.length_m)
            self.heading = self.route.at(self.s, self.direction).heading_deg
            return
        if cond.unplugged:
            self.phase, self.plugged = Phase.DOCKED, False
            self.pct = rng.uniform(30.0, 70.0)
            return
        if cond.low_battery_pct is not None:
            self.pct = cond.low_battery_pct
            if p.segway:
                self.phase = Phase.PARKED
                self.s = rng.uniform(120.0, 300.0)
                self.heading = self.route.at(self.s, self.direction).heading_deg
            else:
                self.start_patrol(endless=True)
                self.s = rng.uniform(0.0, self.route.length_m)
            return
        roll = rng.random()
        if roll < p.reserve_share:
            if rng.random() < p.off_share:
                self.phase, self.pct = Phase.OFF, rng.uniform(50.0, 90.0)
            else:
                self.phase, self.plugged = Phase.DOCKED, True
                self.pct = rng.uniform(85.0, 100.0)
            return
        roll = rng.random()
        if roll < 0.5:
            self.pct = rng.uniform(45.0, 95.0)
            self.start_patrol()
            self.s = rng.uniform(0.0, self.route.length_m)
            self.patrol_end = t + rng.uniform(20.0, 120.0) * 60.0
        elif roll < 0.75:
            self.phase, self.plugged = Phase.DOCKED, True
            self.pct = rng.uniform(15.0, 75.0)
            self.until = t + rng.uniform(30.0, 150.0) * 60.0
        else:
            self.phase, self.plugged = Phase.DOCKED, True
            self.pct = rng.uniform(90.0, 100.0)
            self.until = t + rng.uniform(5.0, 60.0) * 60.0

    def start_patrol(self, *, endless: bool = False) -> None:
        """Leave now for a patrol (off the charger); `endless` never heads home."""
        rng, p = self.rng, self.profile
        self.phase = Phase.PATROL
        self.plugged = False
        self.ride_along = rng.random() < p.ride_along_share
        self.speed_range = p.ride_along_kmh if self.ride_along else p.speed_kmh
        self.endless = endless
        self.until = INF
        self.patrol_end = INF if endless else self.t + rng.uniform(*p.patrol_min) * 60.0
        self.stopped_until = -INF
        self._new_leg()

    def dock(self, *, plugged: bool = True, until: float = INF) -> None:
        """Put the device on its dock now; it stays until `until` (then a shift may start)."""
        self.phase, self.plugged, self.speed, self.s = Phase.DOCKED, plugged, 0.0, 0.0
        self.stopped_until, self.patrol_end, self.next_stop = -INF, INF, INF
        self.heading = self.dock_heading
        self.until = until

    def _new_leg(self) -> None:
        low, high = self.speed_range
        span = high - low
        self.target_speed = self.rng.uniform(low + 0.1 * span, high - 0.2 * span)
        self.speed = self.target_speed
        self.next_stop = self.t + self.rng.uniform(*self.profile.stop_every_min) * 60.0

    # -- time ----------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Live until simulated epoch second `t` (no-op if `t` is not later)."""
        while True:
            self._events()
            if self.t >= t:
                return
            nxt = min(t, self._next_event())
            self._integrate(nxt - self.t)
            self.t = nxt  # assigned, not added: events must fire at exactly their time

    def _moving(self) -> bool:
        return self.phase in (Phase.PATROL, Phase.RETURN) and self.stopped_until <= self.t

    def _next_event(self) -> float:
        ph = self.phase
        if ph is Phase.PATROL or ph is Phase.RETURN:
            nxt = self.t + MAX_MOVE_STEP_S
            if self.stopped_until > self.t:
                return min(nxt, self.stopped_until)
            if ph is Phase.PATROL:
                return min(nxt, self.next_stop, self.patrol_end)
            return nxt
        return self.until

    def _events(self) -> None:
        """Fire every transition due at `self.t`; leaves all event times in the future."""
        rng, p, t = self.rng, self.profile, self.t
        if self.pct <= 0.0 and not self.plugged and self.phase is not Phase.OFF:
            self.pct, self.phase, self.until, self.speed = 0.0, Phase.OFF, INF, 0.0
            return
        ph = self.phase
        if ph is Phase.DOCKED and t >= self.until:
            if self.pct >= p.depart_pct:
                if p.segway:
                    self.phase, self.plugged = Phase.PREP, False
                    self.until = t + rng.uniform(2.0, 5.0) * 60.0
                else:
                    self.start_patrol()
            else:
                self.until = t + 600.0  # check the charge again in ten minutes
        elif ph is Phase.PREP and t >= self.until:
            self.until = INF
            self.start_patrol()
        elif ph is Phase.PATROL:
            if (t >= self.patrol_end or self.pct <= p.return_pct) and not self.endless:
                self.phase = Phase.RETURN
                self.stopped_until = -INF
                self.lap_end = math.ceil(self.s / self.route.length_m) * self.route.length_m
            elif self.stopped_until > -INF and t >= self.stopped_until:
                self.stopped_until = -INF
                self._new_leg()
            elif t >= self.next_stop and self.stopped_until == -INF:
                self.stopped_until = t + rng.uniform(*p.stop_for_min) * 60.0
                self.next_stop = INF
                self.speed = 0.0
        if self.phase is Phase.RETURN and self.s >= self.lap_end:
            self.dock(until=t + rng.uniform(20.0, 60.0) * 60.0)

    def _integrate(self, h: float) -> None:
        p, ph = self.profile, self.phase
        hours = h / 3600.0
        wear = 100.0 / self.health  # a worn pack holds less, so each use costs more %
        if ph is Phase.DOCKED and self.plugged:
            before = self.pct
            self.pct = battery.charge(self.pct, hours, p.charge_rate)
            self.health -= (self.pct - before) / 100.0 * self.wear_per_cycle
            heat = 9.0 * battery.charge_rate(self.pct, p.charge_rate) / p.charge_rate
            self.temp = battery.relax(self.temp, INDOOR_C + heat, h)
            return
        if self._moving():
            low, high = self.speed_range
            self.speed = _clamp(
                self.target_speed
                + (self.speed - self.target_speed) * 0.5
                + self.rng.gauss(0.0, 0.8),
                low,
                high,
            )
            dist = self.speed / 3.6 * h
            if ph is Phase.RETURN:
                dist = min(dist, self.lap_end - self.s)
            self.s += dist
            self.odometer_km += dist / 1000.0
            drain = p.move_drain + p.move_drain_per_kmh * self.speed
            target = battery.ambient_c(self.t) + (4.0 + 0.35 * self.speed if p.segway else 0.0)
        elif ph is Phase.OFF:
            drain, target = p.off_drain, self._parked_air()
        elif ph is Phase.DOCKED:
            drain, target = p.dock_drain, INDOOR_C
        else:
            drain, target = p.idle_drain, self._parked_air() + (1.0 if p.segway else 0.0)
        if not p.segway and ph in (Phase.PATROL, Phase.RETURN, Phase.PARKED, Phase.FAULT):
            target = 0.5 * battery.ambient_c(self.t) + 15.0  # in a pocket, warmed by the officer
        self.pct = max(0.0, self.pct - drain * wear * hours)
        self.temp = battery.relax(self.temp, target, h)

    def _parked_air(self) -> float:
        return INDOOR_C if self._at_station() else battery.ambient_c(self.t)

    def _at_station(self) -> bool:
        # s is 0 at the dock: a battery that died on patrol leaves the unit where it stopped
        ph = self.phase
        return ph is Phase.DOCKED or ph is Phase.PREP or (ph is Phase.OFF and self.s == 0.0)

    # -- reporting -----------------------------------------------------------

    def state(self) -> State:
        ph = self.phase
        if ph is Phase.DOCKED:
            return "charging" if self.plugged and self.pct < 100.0 else "docked"
        if ph is Phase.FAULT:
            return "fault"
        if ph is Phase.OFF:
            return "off"
        if self._moving() and (self.profile.segway or self.ride_along):
            return "riding"
        return "idle"

    def current_a(self) -> float:
        p, ph = self.profile, self.phase
        if ph is Phase.DOCKED and self.plugged:
            rate = battery.charge_rate(self.pct, p.charge_rate)
            return max(rate, 0.4) * p.capacity_ah / 100.0  # a small float charge when full
        if self._moving():
            rate = p.move_drain + p.move_drain_per_kmh * self.speed
        elif ph is Phase.OFF:
            rate = p.off_drain
        elif ph is Phase.DOCKED:
            rate = p.dock_drain
        else:
            rate = p.idle_drain
        return -rate * p.capacity_ah / 100.0

    def read(self) -> Sample:
        """What the device reports now; every call is one message (seq + 1)."""
        rng, p = self.rng, self.profile
        self.seq += 1
        moving = self._moving()
        if self._at_station():
            lat, lon = self.dock_lat, self.dock_lon
            accuracy = rng.uniform(8.0, 25.0)  # indoors
            heading = self.dock_heading
        else:
            fix = self.route.at(self.s, self.direction)
            lat, lon = fix.lat, fix.lon
            accuracy = rng.uniform(3.0, 8.0)
            if moving:
                self.heading = fix.heading_deg
            heading = self.heading
        noise = accuracy * 0.4
        lat, lon = self.route.offset(lat, lon, rng.gauss(0.0, noise), rng.gauss(0.0, noise))
        speed = _clamp(self.speed + rng.gauss(0.0, 0.3), *self.speed_range) if moving else 0.0
        if moving:
            heading = (heading + rng.gauss(0.0, 3.0)) % 360.0
        current = self.current_a() * (1.0 + rng.gauss(0.0, 0.03))
        volts = p.cells * battery.cell_ocv(self.pct) + current * p.internal_ohm
        away_km = self.route.distance_from_station_m(lat, lon) / 1000.0
        rssi = round(_clamp(self.rssi_base - 8.0 * away_km + rng.gauss(0.0, 2.5), -110, -30))
        range_km = None
        if p.full_range_km is not None:
            range_km = round(self.pct / 100.0 * p.full_range_km * self.health / 100.0, 1)
        return Sample(
            device=self.id,
            site=self.site,
            kind=self.kind,
            seq=self.seq,
            t=self.t,
            pct=round(self.pct, 1),
            voltage_v=round(volts, 2),
            current_a=round(current, 2),
            temp_c=round(self.temp, 1),
            charging=self.plugged,
            health_pct=round(self.health, 1),
            fix=p.segway or not self._at_station(),
            lat=round(lat, 6),
            lon=round(lon, 6),
            accuracy_m=round(accuracy, 1),
            speed_kmh=round(speed, 1),
            heading_deg=round(heading, 1) % 360.0,
            state=self.state(),
            odometer_km=round(self.odometer_km, 2) if p.segway else None,
            range_km=range_km,
            error_code=self.error_code,
            locked=(self.phase in (Phase.DOCKED, Phase.OFF)) if p.segway else None,
            rssi_dbm=rssi,
            firmware=self.firmware,
            speedometer_kmh=round(speed, 1) if p.segway else None,
        )
