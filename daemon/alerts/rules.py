"""The rule conditions: pure functions of what is known of a device, no time, no state.

Each returns a verdict: True (the fire condition holds), False (the resolve
condition holds) or None (nothing to say: the value is unknown, or it lies in the
hysteresis band between the fire and resolve levels, where the alert keeps its
state). Hysteresis is what keeps a battery hovering at 25-26 % from flapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from fleet.config.alerts import Geofence, Limits, Rule
from fleet.daemon.wire import DecodedReading

Verdict = bool | None

_EARTH_RADIUS_M = 6_371_008.8
_T = TypeVar("_T")


@dataclass(slots=True)
class DeviceView:
    """What is known of one device: the newest value of each field from its readings.

    Fields merge across readings because a device may send battery and location in
    separate messages (OwnTracks sends no status at all). The marks of time and
    order (``newest_ts_ms``, ``seq``, ``heard_ms``, the clock offset and its
    learning run) are kept by ``daemon.alerts.clock``.
    """

    site: str
    kind: str
    source: str
    # The newest reading's ts on the device's clock, never past the device's "now".
    newest_ts_ms: int
    pct: float | None = None
    charging: bool | None = None
    temp_c: float | None = None
    state: str | None = None
    error_code: int | None = None
    lat: float | None = None
    lon: float | None = None
    seq: int | None = None
    # When the device was last heard, on the collector's clock; None in state written
    # before it was kept (then newest_ts_ms stands in).
    heard_ms: int | None = None
    # Arrival minus ts of its live readings, once learned; and the run it is learned from.
    offset_ms: int | None = None
    run_min_ms: int | None = None
    run_start_ms: int | None = None

    @classmethod
    def of(cls, reading: DecodedReading) -> DeviceView:
        view = cls(reading.site, reading.kind, reading.source, reading.ts_ms)
        view.update(reading)
        return view

    def update(self, reading: DecodedReading) -> None:
        self.site, self.kind, self.source = reading.site, reading.kind, reading.source
        if reading.battery is not None:
            b = reading.battery
            self.pct = _newer(b.pct, self.pct)
            self.charging = _newer(b.charging, self.charging)
            self.temp_c = _newer(b.temp_c, self.temp_c)
        if reading.status is not None:
            self.state = _newer(reading.status.state, self.state)
            self.error_code = _newer(reading.status.error_code, self.error_code)
        if reading.location is not None:
            self.lat, self.lon = reading.location.lat, reading.location.lon

    @property
    def last_heard_ms(self) -> int:
        return self.newest_ts_ms if self.heard_ms is None else self.heard_ms

    @property
    def is_charging(self) -> bool | None:
        """Charging per the battery flag or the device state; None when neither says."""
        if self.charging is True or self.state == "charging":
            return True
        return self.charging


def _newer(new: _T | None, old: _T | None) -> _T | None:
    return old if new is None else new


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def geofence_at(view: DeviceView, geofences: Sequence[Geofence]) -> Geofence | None:
    """The first geofence of the device's site that its last position is inside."""
    if view.lat is None or view.lon is None:
        return None
    for fence in geofences:
        if fence.site == view.site and (
            distance_m(view.lat, view.lon, fence.lat, fence.lon) <= fence.radius_m
        ):
            return fence
    return None


def docked(view: DeviceView, geofences: Sequence[Geofence]) -> Verdict:
    """Docked: state "docked", or inside a sub-station geofence. None when unknown."""
    if view.state == "docked" or geofence_at(view, geofences) is not None:
        return True
    if view.state is None and view.lat is None:
        return None
    return False


def at_or_below(value: float | None, fire_at: float, clear_at: float) -> Verdict:
    if value is None:
        return None
    if value <= fire_at:
        return True
    if value >= clear_at:
        return False
    return None


def at_or_above(value: float | None, fire_at: float, clear_at: float) -> Verdict:
    if value is None:
        return None
    if value >= fire_at:
        return True
    if value <= clear_at:
        return False
    return None


def battery(view: DeviceView, fire_at: float, clear_at: float) -> Verdict:
    """Low charge, suppressed while charging: charging resolves a firing battery alert."""
    if view.is_charging is True:
        return False
    return at_or_below(view.pct, fire_at, clear_at)


def not_charging(view: DeviceView, limits: Limits, geofences: Sequence[Geofence]) -> Verdict:
    """Docked below not_charging_below_pct and known not to charge (the hold is the `for`)."""
    is_docked = docked(view, geofences)
    charging = view.is_charging
    if is_docked is False or charging is True:
        return False
    if view.pct is not None and view.pct >= limits.not_charging_below_pct:
        return False
    if is_docked is None or charging is None or view.pct is None:
        return None
    return True


def fault(view: DeviceView) -> Verdict:
    """State "fault" or a non-zero error code; None before any status was seen."""
    if view.state is None and view.error_code is None:
        return None
    return view.state == "fault" or view.error_code not in (None, 0)


def reading_verdicts(
    view: DeviceView, limits: Limits, geofences: Sequence[Geofence]
) -> dict[Rule, tuple[Verdict, float | None]]:
    """The verdict and value of every enabled reading-driven rule for ``view``."""
    found: dict[Rule, tuple[Verdict, float | None]] = {
        Rule.BATTERY_LOW: (
            battery(view, limits.battery_low_pct, limits.battery_low_clear_pct),
            view.pct,
        ),
        Rule.BATTERY_CRITICAL: (
            battery(view, limits.battery_critical_pct, limits.battery_critical_clear_pct),
            view.pct,
        ),
        Rule.NOT_CHARGING: (not_charging(view, limits, geofences), view.pct),
        Rule.OVERTEMP: (
            at_or_above(view.temp_c, limits.overtemp_c, limits.overtemp_clear_c),
            view.temp_c,
        ),
        Rule.FAULT: (
            fault(view),
            None if view.error_code is None else float(view.error_code),
        ),
    }
    return {rule: v for rule, v in found.items() if rule not in limits.disabled}


def silent_too_long(last_heard_ms: int, now_ms: int, after_s: float) -> bool:
    """The offline condition: nothing heard for longer than the kind's expected silence."""
    return now_ms - last_heard_ms > after_s * 1000


def hold_ms(rule: Rule, limits: Limits) -> int:
    """The rule's `for`: how long its condition must hold before it fires."""
    seconds = {
        Rule.BATTERY_LOW: limits.battery_low_for_s,
        Rule.BATTERY_CRITICAL: limits.battery_critical_for_s,
        Rule.NOT_CHARGING: limits.not_charging_for_s,
        Rule.OVERTEMP: limits.overtemp_for_s,
        Rule.FAULT: limits.fault_for_s,
    }.get(rule, 0.0)
    return round(seconds * 1000)
