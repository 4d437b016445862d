"""A day of readings delivered late: what the roll-up backfill tests publish and expect.

Three devices at two sites, a reading every 10 minutes from 50 h to 26 h ago (well past the
CQs' `downsample_for`, well within the raw retention), each with its three groups. The
expected roll-up is computed here from the readings themselves, independently of InfluxDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet.config import FleetSettings
from fleet.daemon.collector import rollup
from fleet.daemon.mqtt import MqttLink
from tests.harness.fleet import telemetry

H = rollup.HOUR_MS
DEVICES = (
    ("allingtown", "segway", "sw-01"),
    ("allingtown", "segway", "sw-02"),
    ("downtown", "handheld", "hh-01"),
)


@dataclass(frozen=True)
class Reading:
    site: str
    kind: str
    device: str
    seq: int
    ts_ms: int
    pct: float
    health_pct: float


@dataclass
class LateDay:
    readings: list[Reading] = field(default_factory=list)

    @property
    def start_ms(self) -> int:
        return min(r.ts_ms for r in self.readings)

    @property
    def end_ms(self) -> int:
        return max(r.ts_ms for r in self.readings)

    @property
    def hours(self) -> set[int]:
        return {rollup.hour_of(r.ts_ms) for r in self.readings}

    @property
    def points(self) -> int:
        return 3 * len(self.readings)  # battery, location, status

    def per_device_hour(self) -> dict[tuple[str, int], list[Reading]]:
        groups: dict[tuple[str, int], list[Reading]] = {}
        for r in sorted(self.readings, key=lambda r: r.ts_ms):
            groups.setdefault((r.device, rollup.hour_of(r.ts_ms)), []).append(r)
        return groups


def late_day(now_ms: int, *, first_h: int = 50, last_h: int = 26, step_min: int = 10) -> LateDay:
    day = LateDay()
    # On a minute boundary plus a second, so no reading sits exactly on an hour's edge.
    start = now_ms - first_h * H
    start -= start % 60_000 - 1000
    for index, (site, kind, device) in enumerate(DEVICES):
        ts, seq = start, 1
        while ts <= now_ms - last_h * H:
            # A charge that runs down and is charged again; a health that slowly declines.
            pct = round(95.0 - (seq * 3 + index * 7) % 80, 1)
            health = round(99.0 - index * 4 - seq * 0.01, 2)
            day.readings.append(Reading(site, kind, device, seq, ts, pct, health))
            ts += step_min * 60_000
            seq += 1
    return day


def payload(r: Reading) -> bytes:
    return telemetry(
        r.device,
        r.seq,
        r.ts_ms,
        battery={
            "pct": r.pct,
            "health_pct": r.health_pct,
            "charging": r.seq % 5 == 0,
            "voltage_v": 50.0 + r.pct / 10,
            "temp_c": 21.5,
        },
        location={"lat": 41.27 + r.seq / 10_000, "lon": -72.95, "speed_kmh": float(r.seq % 20)},
        status={"state": "riding" if r.seq % 2 else "idle", "odometer_km": 1000.0 + r.seq / 10},
    )


def publish(link: MqttLink, day: LateDay) -> None:
    for r in day.readings:
        link.publish(f"fleet/v1/{r.site}/{r.kind}/{r.device}/telemetry", payload(r), qos=1)


def with_influx(settings: FleetSettings, **influx: Any) -> FleetSettings:
    """The same settings with some [influx] keys changed (write_config writes that section)."""
    return settings.model_copy(update={"influx": settings.influx.model_copy(update=influx)})
