"""The explicit registry of driver kinds: kind -> config model, driver class, device kind.

Adding a driver means adding one line here and its config model to the union
in `config.agent` (a test checks that the two agree). Nothing is discovered
by import side effects or entry points: what the agent can run is this list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleet.config import FleetSettings
from fleet.drivers.base import Driver, DriverConfig
from fleet.drivers.ble.battery import BleBattery
from fleet.drivers.ble.bthome import BTHome
from fleet.drivers.ble.config import BleBatteryConfig, BTHomeConfig
from fleet.drivers.gps.config import NmeaGpsConfig
from fleet.drivers.gps.nmea import NmeaGps
from fleet.drivers.ninebot.ble import NinebotBle
from fleet.drivers.ninebot.config import NinebotBleConfig, NinebotSerialConfig
from fleet.drivers.ninebot.serial import NinebotSerial
from fleet.drivers.segway_pt.config import SegwayPtBatteryConfig
from fleet.drivers.segway_pt.driver import SegwayPtBattery

Clock = Callable[[], int]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class DriverKind:
    config: type[DriverConfig]
    driver: Callable[..., Driver]
    device_kind: str  # the wire `kind` of its device when the device registry does not say
    ble: bool  # fed by BLE advertisements: restarted by the BLE liveness watchdog


# fmt: off
KINDS: dict[str, DriverKind] = {
    "ninebot_serial": DriverKind(NinebotSerialConfig, NinebotSerial, "segway", ble=False),
    "ninebot_ble":    DriverKind(NinebotBleConfig, NinebotBle, "segway", ble=True),
    "ble_battery":    DriverKind(BleBatteryConfig, BleBattery, "handheld", ble=True),
    "bthome":         DriverKind(BTHomeConfig, BTHome, "handheld", ble=True),
    "nmea_gps":       DriverKind(NmeaGpsConfig, NmeaGps, "handheld", ble=False),
    "segway_pt_battery": DriverKind(SegwayPtBatteryConfig, SegwayPtBattery, "segway", ble=False),
}
# fmt: on


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """One driver as the agent runs it: a name for the logs, its devices, how to build it."""

    name: str
    devices: tuple[str, ...]
    device_kind: str
    ble: bool
    factory: Callable[[], Driver]  # a fresh driver for every (re)start


def spec_for(config: DriverConfig, *, clock: Clock = wall_ms, **hooks: Any) -> DriverSpec:
    """The spec of one configured driver; `hooks` go to its constructor (tests' transports)."""
    kind_name: str = getattr(config, "kind")  # noqa: B009 - every driver config has it
    entry = KINDS[kind_name]
    device: str = getattr(config, "device")  # noqa: B009

    def factory() -> Driver:
        return entry.driver(config, clock=clock, **hooks)

    return DriverSpec(
        name=f"{kind_name}:{device}",
        devices=(device,),
        device_kind=entry.device_kind,
        ble=entry.ble,
        factory=factory,
    )


def build_specs(settings: FleetSettings, *, clock: Clock = wall_ms) -> list[DriverSpec]:
    return [spec_for(config, clock=clock) for config in settings.agent.drivers]


def driver_devices(specs: Sequence[DriverSpec]) -> list[str]:
    seen: dict[str, None] = {}
    for spec in specs:
        seen.update(dict.fromkeys(spec.devices))
    return list(seen)
