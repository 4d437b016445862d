"""How each kind of simulated device behaves: battery size and drain, speeds, shift lengths.

Rates are in percent of charge per hour so they read like a spec sheet: a
Segway pack lasts 3-4 hours of patrol (about 30 %/h at 12 km/h, stops
included) and charges empty to full in about 3 hours; a handheld lasts a
ten-hour shift and charges in its cradle in a little over 2 hours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    """How one kind of device behaves. Rates are in % of charge per hour."""

    segway: bool
    cells: int
    capacity_ah: float
    internal_ohm: float
    move_drain: float  # %/h while moving, plus move_drain_per_kmh x speed
    move_drain_per_kmh: float
    idle_drain: float  # powered on, standing
    dock_drain: float  # on the dock, charger not connected
    off_drain: float
    charge_rate: float  # constant-current rate on the charger
    speed_kmh: tuple[float, float]
    ride_along_kmh: tuple[float, float]
    ride_along_share: float  # share of shifts a handheld rides along instead of walking
    patrol_min: tuple[float, float]
    stop_every_min: tuple[float, float]
    stop_for_min: tuple[float, float]
    depart_pct: float  # a shift waits on the charger until at least this
    return_pct: float  # a patrol heads home at this
    full_range_km: float | None
    firmware: tuple[str, ...]
    reserve_share: float
    off_share: float  # share of reserves that are switched off rather than docked


SEGWAY = Profile(
    segway=True,
    cells=20,  # 72 V nominal, 63-84 V
    capacity_ah=16.0,
    internal_ohm=0.12,
    # ~30 %/h at 12 km/h: a full pack lasts 3-4 h of patrol with its stops
    move_drain=10.0,
    move_drain_per_kmh=1.7,
    idle_drain=1.2,
    dock_drain=0.25,
    off_drain=0.03,
    charge_rate=45.0,  # ~3 h empty to full with the taper
    speed_kmh=(8.0, 18.0),
    ride_along_kmh=(8.0, 18.0),
    ride_along_share=0.0,
    patrol_min=(60.0, 150.0),
    stop_every_min=(4.0, 15.0),
    stop_for_min=(1.0, 6.0),
    depart_pct=80.0,
    return_pct=25.0,
    full_range_km=38.0,
    firmware=("1.2.7", "1.3.9", "1.3.9", "1.4.2", "1.4.2"),
    reserve_share=0.25,
    off_share=0.25,
)

HANDHELD = Profile(
    segway=False,
    cells=1,
    capacity_ah=4.0,
    internal_ohm=0.08,
    move_drain=8.0,  # ~9 %/h: a shift of ten hours on one charge
    move_drain_per_kmh=0.2,
    idle_drain=8.0,
    dock_drain=1.0,
    off_drain=0.02,
    charge_rate=60.0,  # ~2.3 h empty to full in the cradle
    speed_kmh=(3.0, 6.0),
    ride_along_kmh=(8.0, 18.0),
    ride_along_share=0.35,
    patrol_min=(90.0, 240.0),
    stop_every_min=(5.0, 20.0),
    stop_for_min=(2.0, 10.0),
    depart_pct=70.0,
    return_pct=15.0,
    full_range_km=None,
    firmware=("2.8.1", "2.9.0", "2.9.0"),
    reserve_share=0.2,
    off_share=0.0,
)
