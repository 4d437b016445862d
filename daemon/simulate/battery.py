"""Battery physics for the simulator: open-circuit voltage, charging with taper, heat.

Pure functions of state and elapsed time, solved in closed form so that a
reading one simulated hour after the last (backfill at high speed-up) costs
the same as one a second later.

- Voltage: a Li-ion NMC cell curve, 3.15 V empty to 4.20 V full; a Segway pack
  is 20 cells in series (63-84 V, 72 V nominal), a handheld one cell. Under
  load the pack sags by current x internal resistance, on the charger it rises.
- Charging: constant current up to 80 % at the profile's rate, then the rate
  falls with the remaining headroom (constant-voltage phase), with a floor of
  15 % of the full rate so the last few percent take tens of minutes, not
  forever. With the Segway rate of 45 %/h empty to full takes about 3 h.
- Heat: the pack temperature relaxes towards a target (ambient plus load
  heating) with a time constant of a quarter hour. Ambient follows the day:
  coolest near 03:00 and warmest near 15:00 West Haven time.
"""

from __future__ import annotations

import itertools
import math

# (percent, volts per cell), increasing in both.
_OCV = (
    (0.0, 3.15),
    (5.0, 3.45),
    (10.0, 3.55),
    (20.0, 3.65),
    (40.0, 3.75),
    (60.0, 3.87),
    (80.0, 4.00),
    (90.0, 4.08),
    (100.0, 4.20),
)

CV_KNEE_PCT = 80.0  # constant current below, tapering above
_TAPER_SPAN = 100.0 - CV_KNEE_PCT
_FLOOR = 0.15  # the taper never drops below this share of the full rate
_FLOOR_PCT = 100.0 - _FLOOR * _TAPER_SPAN  # 97 %: where the floor takes over
THERMAL_TAU_S = 900.0
UTC_OFFSET_H = -5.0  # West Haven standard time; good enough for a day curve


def cell_ocv(pct: float) -> float:
    """Open-circuit volts of one cell at `pct` state of charge."""
    p = min(100.0, max(0.0, pct))
    for (p0, v0), (p1, v1) in itertools.pairwise(_OCV):
        if p <= p1:
            return v0 + (v1 - v0) * (p - p0) / (p1 - p0)
    return _OCV[-1][1]


def charge_rate(pct: float, full_rate: float) -> float:
    """Instantaneous charge rate (%/h) at `pct` for a charger whose CC rate is `full_rate`."""
    if pct >= 100.0:
        return 0.0
    if pct < CV_KNEE_PCT:
        return full_rate
    return full_rate * max(_FLOOR, (100.0 - pct) / _TAPER_SPAN)


def charge(pct: float, hours: float, full_rate: float) -> float:
    """State of charge after charging for `hours` from `pct` (the exact solution of `charge_rate`)."""
    p = pct
    h = hours
    while h > 0.0 and p < 100.0:
        if p < CV_KNEE_PCT:
            need = (CV_KNEE_PCT - p) / full_rate
            if need >= h:
                return p + full_rate * h
            p, h = CV_KNEE_PCT, h - need
        elif p < _FLOOR_PCT:
            # dp/dt = r (100 - p) / span  =>  100 - p decays exponentially
            k = full_rate / _TAPER_SPAN
            need = math.log((100.0 - p) / (100.0 - _FLOOR_PCT)) / k
            if need >= h:
                return 100.0 - (100.0 - p) * math.exp(-k * h)
            p, h = _FLOOR_PCT, h - need
        else:
            return min(100.0, p + full_rate * _FLOOR * h)
    return min(p, 100.0)


def ambient_c(t: float) -> float:
    """Outdoor temperature at epoch second `t`: a mild day curve around 13 °C."""
    hour = (t / 3600.0 + UTC_OFFSET_H) % 24.0
    return 13.0 + 5.0 * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0)


def relax(value: float, target: float, seconds: float, tau_s: float = THERMAL_TAU_S) -> float:
    """First-order approach of `value` towards `target` over `seconds`."""
    return target + (value - target) * math.exp(-seconds / tau_s)
