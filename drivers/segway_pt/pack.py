"""One pack's decoded read (values and the raw words they came from), and the PT's reading.

A PT carries two packs. The vehicle's reading is built so that it is never optimistic: the
charge is the LOWER pack's, the temperature the hottest sensor of either, the cell-group
spread the larger of the two. Each pack's own values, raw words included, stay in
`PackValues` (logged at DEBUG per read by the driver; see drivers/segway_pt/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleet.drivers.readings import Battery, Reading, pack_ids_label, within
from fleet.drivers.segway_pt import registers as reg


@dataclass(frozen=True, slots=True)
class PackValues:
    """What one pack's BMS said in one read: raw words and their decoded values."""

    name: str  # "A" or "B": the pack's place in the config
    soc_raw: int  # register 0x1D, the whole word
    current_raw: int  # register 0xD4
    avg_temp_raw: int  # register 0x95
    sensor_raw: tuple[int, ...]  # register 0x17: the 12-bit reading of sensors 0-3
    cell_raw: tuple[int, ...]  # register 0x96: the raw bits of groups 0-22
    serial: str | None
    revision: str | None

    @property
    def soc_pct(self) -> float | None:
        return reg.soc_pct(self.soc_raw)

    @property
    def current_a(self) -> float:
        return reg.charge_current_a(self.current_raw)

    @property
    def charging(self) -> bool:
        return reg.signed16(self.current_raw) > 0

    @property
    def temps_c(self) -> tuple[float, ...]:
        """The average register first, then sensors 0-3."""
        return tuple(reg.temperature_c(r) for r in (self.avg_temp_raw, *self.sensor_raw))

    @property
    def cells_v(self) -> tuple[float | None, ...]:
        return tuple(reg.cell_volts(r) for r in self.cell_raw)

    @property
    def spread_v(self) -> float | None:
        """Max - min cell-group voltage; None unless every group has a valid value."""
        volts = self.cells_v
        known = [v for v in volts if v is not None]
        if not known or len(known) != len(volts):
            return None
        return max(known) - min(known)

    def describe(self) -> str:
        """One log line's worth: every value with its raw word, for the maintainer's record."""
        temps = "/".join(f"{t:.2f}" for t in self.temps_c)
        cells = [v for v in self.cells_v if v is not None]
        cell_text = (
            f"{min(cells):.3f}..{max(cells):.3f} V" if cells else "none valid"
        ) + f" ({len(cells)}/{len(self.cell_raw)} valid)"
        soc = "doubtful" if self.soc_pct is None else f"{self.soc_pct:g} %"
        return (
            f"pack {self.name} {self.serial or '?'} rev {self.revision or '?'}: "
            f"soc {soc} (raw {self.soc_raw:#06x}), "
            f"current {self.current_a:.3f} A (raw {self.current_raw:#06x}), "
            f"temps avg/s0-s3 {temps} °C (raw {self.avg_temp_raw:#05x} "
            f"{' '.join(f'{r:#05x}' for r in self.sensor_raw)}), "
            f"cells {cell_text} (raw {' '.join(f'{r:03x}' for r in self.cell_raw)})"
        )


def _lowest(values: Sequence[float | None]) -> float | None:
    """The lowest, or None if any is unknown: a missing value could be the lower one."""
    if not values or any(v is None for v in values):
        return None
    return min(v for v in values if v is not None)


def _highest(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def vehicle_reading(device: str, ts_ms: int, packs: Sequence[PackValues]) -> Reading:
    """The PT's one reading from all its packs' values (never the optimistic pack's)."""
    temps = [t for p in packs for t in p.temps_c]
    return Reading(
        device=device,
        ts_ms=ts_ms,
        battery=Battery(
            pct=within("pct", _lowest([p.soc_pct for p in packs])),
            current_a=within("current_a", sum(p.current_a for p in packs)),
            temp_c=within("temp_c", max(temps) if temps else None),
            charging=any(p.charging for p in packs),
            cell_spread_v=within("cell_spread_v", _highest([p.spread_v for p in packs])),
            pack_ids=pack_ids_label([p.serial for p in packs]),
        ),
    )
