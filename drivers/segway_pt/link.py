"""The thin smbus2 adapter: one pack's BMS on a Linux I²C bus, read with blocking calls.

A transaction is what the notes' tool does on the wire: write the register number (a
complete write, with its STOP), then a separate 3-byte read. `write_byte` and a lone read
message through `i2c_rdwr` are exactly that; smbus2's `read_i2c_block_data` would join them
with a repeated START, which the BMS has never been seen to accept.

Every call here blocks (ioctl on /dev/i2c-N), so the driver runs them on its own worker
thread. Tests pass a fake bus with the same three methods (`open_bus` in the driver).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from smbus2 import SMBus, i2c_msg

from fleet.drivers.segway_pt import registers as reg
from fleet.drivers.segway_pt.config import bus_path
from fleet.drivers.segway_pt.pack import PackValues
from fleet.drivers.segway_pt.triplet import TRIPLET_LEN, BadTriplet, Triplet, parse_triplet

_LOG = logging.getLogger(__name__)


class I2cBus(Protocol):
    """The part of `smbus2.SMBus` the driver uses."""

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None: ...

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None: ...

    def close(self) -> None: ...


OpenBus = Callable[[int | str], I2cBus]


def open_smbus(bus: int | str) -> I2cBus:
    """Open a Linux i2c-dev bus (OSError when it is missing or not permitted)."""
    return SMBus(bus)


@dataclass
class LinkStats:
    """Counters of everything that was read and refused (the driver logs them)."""

    triplets: int = 0  # replies received
    bad_checksums: int = 0
    short_replies: int = 0
    disagreements: int = 0  # two valid reads of the state of charge that differed
    stray_entries: int = 0  # list entries with an index the register does not have
    gave_up: int = 0  # registers still unread after the allowed re-reads

    @property
    def refused(self) -> int:
        return self.bad_checksums + self.short_replies + self.disagreements + self.stray_entries


class PackUnreadable(Exception):
    """The pack could not be read this time; the message is the availability reason."""


def _why(exc: OSError) -> str:
    return str(exc) or type(exc).__name__


class PackLink:
    """Reads one pack's BMS: its place on the bus, the re-read rules, the counters."""

    def __init__(
        self,
        name: str,
        bus: int | str,
        *,
        address: int,
        mux: tuple[int, int] | None,  # (multiplexer address, channel)
        retries: int,
        stats: LinkStats,
    ) -> None:
        self.name = name
        self.bus = bus
        self.address = address
        self.mux = mux
        self.retries = retries
        self.stats = stats
        path = bus_path(bus)
        via = f" via multiplexer {mux[0]:#04x} channel {mux[1]}" if mux else ""
        self.where = f"on {path}{via} at {address:#04x}"

    def read(self, bus: I2cBus) -> PackValues:
        """Every register the driver publishes from, or PackUnreadable saying why not."""
        self._select(bus)
        soc = self._confirmed(bus, reg.SOC)
        current = self._single(bus, reg.CHARGE_CURRENT)
        avg_temp = self._single(bus, reg.AVG_TEMP)
        sensors = self._entries(bus, reg.SENSORS, reg.SENSORS_WANTED, reg.sensor_entry)
        cells = self._entries(bus, reg.CELLS, reg.CELLS_WANTED, reg.cell_entry)
        identity = self._entries(bus, reg.IDENTITY, reg.IDENTITY_WANTED, reg.identity_entry)
        return PackValues(
            name=self.name,
            soc_raw=soc,
            current_raw=current,
            avg_temp_raw=avg_temp & 0xFFF,
            sensor_raw=tuple(sensors[i] for i in sorted(reg.SENSORS_WANTED)),
            cell_raw=tuple(cells[i] for i in sorted(reg.CELLS_WANTED)),
            serial=reg.serial_number(identity),
            revision=reg.revision(identity),
        )

    def _select(self, bus: I2cBus) -> None:
        if self.mux is None:
            return
        address, channel = self.mux
        try:
            bus.write_byte(address, 1 << channel)
        except OSError as exc:
            raise PackUnreadable(
                f"the multiplexer at {address:#04x} on {bus_path(self.bus)} does not answer "
                f"(pack {self.name}: {_why(exc)})"
            ) from exc

    def _triplet(self, bus: I2cBus, register: int) -> Triplet | None:
        """One transaction; None (counted) for a reply that is no valid triplet."""
        try:
            bus.write_byte(self.address, register)
            msg = i2c_msg.read(self.address, TRIPLET_LEN)
            bus.i2c_rdwr(msg)
        except OSError as exc:  # NACK (ENXIO, EREMOTEIO), bus gone (ENODEV), timeout
            raise PackUnreadable(
                f"pack {self.name} does not answer {self.where} - is 12 V on BATTERY ENABLE? "
                f"({_why(exc)})"
            ) from exc
        self.stats.triplets += 1
        try:
            return parse_triplet(register, bytes(msg))
        except BadTriplet as bad:
            if bad.short:
                self.stats.short_replies += 1
            else:
                self.stats.bad_checksums += 1
            _LOG.debug("pack %s %s: %s, re-read", self.name, self.where, bad)
            return None

    def _give_up(self, register: int, what: str) -> PackUnreadable:
        self.stats.gave_up += 1
        name = reg.REGISTERS[register].name
        return PackUnreadable(
            f"pack {self.name} {self.where} gives corrupt replies: register {register:#04x} "
            f"({name}): {what}"
        )

    def _single(self, bus: I2cBus, register: int) -> int:
        for _ in range(1 + self.retries):
            triplet = self._triplet(bus, register)
            if triplet is not None:
                return triplet.word
        raise self._give_up(register, f"no valid reply in {1 + self.retries} reads")

    def _confirmed(self, bus: I2cBus, register: int) -> int:
        """A word two valid reads in a row agree on.

        The checksum cannot see a flipped bit 6 or 7, and the state of charge is what the
        readiness verdict rests on: 25 % read as 89 % (0x19 -> 0x59) must not get through.
        """
        previous: int | None = None
        failures = 0
        while failures <= self.retries:
            triplet = self._triplet(bus, register)
            if triplet is None:
                failures += 1
                continue
            if triplet.word == previous:
                return previous
            if previous is not None:
                self.stats.disagreements += 1
                failures += 1
            previous = triplet.word
        raise self._give_up(register, f"no two reads in a row agreed ({self.retries} re-reads)")

    def _entries(
        self,
        bus: I2cBus,
        register: int,
        wanted: Collection[int],
        split: Callable[[int], tuple[int, int]],
    ) -> dict[int, int]:
        """Index -> value of the list `register` until every `wanted` index is in.

        Each read returns the next entry, which names its own index, so the order and the
        place the list starts at do not matter. An entry lost to a bad reply comes round
        again only after the whole list: re-reading it is another pass, and `retries`
        passes beyond the first full one are allowed.
        """
        entries = reg.REGISTERS[register].entries
        found: dict[int, int] = {}
        for _ in range(entries * (1 + self.retries)):
            triplet = self._triplet(bus, register)
            if triplet is None:
                continue
            index, value = split(triplet.word)
            if index >= entries:
                self.stats.stray_entries += 1
                continue
            found[index] = value
            if all(i in found for i in wanted):
                return found
        missing = sum(1 for i in wanted if i not in found)
        raise self._give_up(register, f"{missing} of {len(wanted)} entries missing")
