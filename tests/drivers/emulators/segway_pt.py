"""An emulated Segway PT lithium pack BMS behind a fake `smbus2.SMBus` (protocols.md §2.1).

`EmulatedPack` answers register reads with triplets `[checksum][MSB][LSB]`. `EmulatedPack.real()`
is seeded with the bytes read from a real pack (serial "C01061400098", revision "AH", state of
charge 25 %, the four sensors, the average temperature, the charge current) and replays them
verbatim, checksums included; the cell groups, which the notes give no real read of, are made
up. Other packs are built from values, with the checksum computed here by the notes' rule,
independently of the driver's code. List registers return the next entry on each read and
keep their position between polls, as the notes describe.

Faults: `answering = False` (the BMS NACKs: no 12 V on BATTERY ENABLE), `corrupt` / `short`
(the next N replies with a bad checksum / 2 bytes), `noise_every` (every N-th reply corrupt),
`soc_glitches` (the next N state-of-charge replies with bit 6 of the LSB flipped: a valid
checksum on a wrong value, which the rule cannot see).

`FakeBus` has the three methods the driver's adapter calls (`write_byte`, `i2c_rdwr`,
`close`) and fills smbus2's own `i2c_msg` read buffers; `FakeBuses.open` is the driver's
`open_bus` hook. A `FakeMux` is a TCA9548A-style multiplexer: one control byte, a bit per
channel. Every write is recorded, so a test can show the driver only ever wrote register
numbers and channel selections.
"""

from __future__ import annotations

import ctypes
import errno
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

I2C_M_RD = 0x0001
PACK_ADDRESS = 0x31
SOC, CURRENT, AVG_TEMP, SENSORS, CELLS, IDENTITY = 0x1D, 0xD4, 0x95, 0x17, 0x96, 0xC6

REAL_SERIAL = "C01061400098"
REAL_REVISION = "AH"
# protocols.md §2.1, "Real values read from a pack".
REAL_SINGLES: dict[int, bytes] = {
    0x03: bytes((0x79, 0x00, 0x03)),
    0x05: bytes((0x4E, 0x04, 0x28)),
    0x06: bytes((0xAA, 0x00, 0x4F)),
    SOC: bytes((0xCA, 0xFF, 0x19)),
    0x41: bytes((0x99, 0x18, 0xCD)),
    AVG_TEMP: bytes((0x1A, 0x01, 0x4F)),
    CURRENT: bytes((0x6B, 0x00, 0x00)),
}
REAL_IDENTITY_DUMP = (
    "[AA:0:4F] [F7:1:1] [45:2:32] [46:3:30] [3C:4:39] [3E:5:36] [3C:6:37] [42:7:30] [41:8:30] "
    "[40:9:30] [BF:A:30] [3D:B:31] [2C:C:41] [24:D:48] [BA:E:31] [BA:F:30] [38:10:31] "
    "[38:11:30] [AE:12:39] [32:13:34] [2E:14:37] [A1:15:43] [33:16:30] [B1:17:31] [31:18:30] "
    "[AA:19:36] [AE:1A:31] [AA:1B:34] [2D:1C:30] [2C:1D:30] [AB:1E:30] [21:1F:39] [A1:20:38] "
    "[83:21:55] [2:22:55] [5E:23:F8] [27:24:AE] [D4:25:0]"
)
REAL_SENSORS_DUMP = "[7F:1:68] [F3:11:64] [4E:21:79] [4A:31:6D]"
# The real sensors and average at 1/16 °C per step (the notes' tool).
REAL_SENSORS_C = (22.5, 22.25, 23.5625, 22.8125)
REAL_AVG_TEMP_C = 20.9375


def parse_dump(text: str) -> list[bytes]:
    """`[checksum:MSB:LSB] ...` in hex, as the notes print a list register, as reply bytes."""
    return [
        bytes(int(part, 16) for part in m.groups())
        for m in re.finditer(r"\[(\w+):(\w+):(\w+)\]", text)
    ]


def checksum(register: int, msb: int, lsb: int, top: int = 2) -> int:
    """A valid checksum by the notes' rule; `top` sets the two bits the rule leaves free."""
    return (64 - (register + msb + lsb + 1) % 64) % 64 | top << 6


def triplet(register: int, word: int, top: int = 2) -> bytes:
    msb, lsb = word >> 8 & 0xFF, word & 0xFF
    return bytes((checksum(register, msb, lsb, top), msb, lsb))


def adc_for(volts: float) -> int:
    """The 10-bit cell-group ADC value of `volts` at 8 V / 1023 per step."""
    return round(volts * 1023 / 8)


def temp_raw(celsius: float) -> int:
    return round(celsius * 16) & 0xFFF


def default_cells(base_v: float = 3.70, spread_v: float = 0.04) -> list[float]:
    """23 cell-group voltages: 22 at base_v, the last one spread_v higher."""
    return [base_v] * 22 + [base_v + spread_v]


class EmulatedPack:
    """One lithium pack's BMS at 0x31; see the module docstring."""

    def __init__(self) -> None:
        self.singles: dict[int, bytes] = {}
        self.lists: dict[int, list[bytes]] = {}
        self.positions: dict[int, int] = {}
        self.register: int | None = None
        self.answering = True
        self.corrupt = 0
        self.short = 0
        self.noise_every = 0
        self.soc_glitches = 0
        self.replies = 0
        self.reads: dict[int, int] = {}  # register -> replies given
        self.lock = threading.Lock()

    @classmethod
    def real(cls, cells_v: Iterable[float] | None = None) -> EmulatedPack:
        pack = cls()
        pack.singles.update(REAL_SINGLES)
        pack.lists[IDENTITY] = parse_dump(REAL_IDENTITY_DUMP)
        pack.lists[SENSORS] = parse_dump(REAL_SENSORS_DUMP)
        pack.set_cells(default_cells() if cells_v is None else cells_v)
        return pack

    @classmethod
    def made(
        cls,
        *,
        soc_pct: int,
        serial: str,
        revision: str = "AH",
        sensors_c: Iterable[float] = (20.0, 21.0, 22.0, 23.0),
        avg_temp_c: float = 21.0,
        current_raw: int = 0,
        cells_v: Iterable[float] | None = None,
    ) -> EmulatedPack:
        pack = cls.real(cells_v)
        pack.set_soc(soc_pct)
        pack.set_current(current_raw)
        pack.singles[AVG_TEMP] = triplet(AVG_TEMP, temp_raw(avg_temp_c))
        pack.lists[SENSORS] = [
            triplet(SENSORS, i << 12 | temp_raw(c)) for i, c in enumerate(sensors_c)
        ]
        pack.set_identity(serial, revision)
        return pack

    def set_soc(self, pct: int) -> None:
        self.singles[SOC] = triplet(SOC, 0xFF00 | pct)

    def set_current(self, raw: int) -> None:
        self.singles[CURRENT] = triplet(CURRENT, raw & 0xFFFF)

    def set_cells(self, volts: Iterable[float]) -> None:
        self.lists[CELLS] = [triplet(CELLS, i << 11 | adc_for(v)) for i, v in enumerate(volts)]

    def set_identity(self, serial: str, revision: str) -> None:
        chars = {0x0C + i: ord(c) for i, c in enumerate(revision)}
        chars.update({0x15 + i: ord(c) for i, c in enumerate(serial)})
        self.lists[IDENTITY] = [triplet(IDENTITY, i << 8 | chars.get(i, 0x30)) for i in range(0x26)]

    def select(self, register: int) -> None:
        with self.lock:
            self.register = register

    def reply(self) -> bytes:
        with self.lock:
            register = self.register
            if register is None:
                return b"\xff\xff\xff"  # nothing addressed: a released bus
            data = self._value(register)
            self.replies += 1
            self.reads[register] = self.reads.get(register, 0) + 1
            if register == SOC and self.soc_glitches > 0:
                self.soc_glitches -= 1
                data = data[:2] + bytes((data[2] ^ 0x40,))  # bit 6: the sum moves by 64
            if self.short > 0:
                self.short -= 1
                return data[:2]
            noisy = self.noise_every > 0 and self.replies % self.noise_every == 0
            if self.corrupt > 0 or noisy:
                self.corrupt = max(0, self.corrupt - 1)
                return bytes((data[0] ^ 0x01, data[1], data[2]))
            return data

    def _value(self, register: int) -> bytes:
        entries = self.lists.get(register)
        if entries is None:
            return self.singles.get(register, triplet(register, 0x0002))  # "nothing here"
        position = self.positions.get(register, 0)
        self.positions[register] = (position + 1) % len(entries)
        return entries[position]


@dataclass
class FakeMux:
    """A TCA9548A-style multiplexer: the control byte has one bit per channel."""

    address: int
    channels: dict[int, EmulatedPack]
    selected: int = 0
    answering: bool = True

    def pack(self) -> EmulatedPack | None:
        chosen = [p for ch, p in self.channels.items() if self.selected >> ch & 1]
        return chosen[0] if len(chosen) == 1 else None


@dataclass
class FakeBus:
    """A Linux i2c-dev bus as smbus2.SMBus shows it, with emulated devices on it."""

    path: str
    packs: dict[int, EmulatedPack] = field(default_factory=dict)  # address -> pack
    mux: FakeMux | None = None
    closed: bool = False
    writes: list[tuple[int, int]] = field(default_factory=list)  # (address, byte)

    def _device(self, address: int) -> EmulatedPack:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        pack = self.packs.get(address)
        if pack is None and self.mux is not None and address == PACK_ADDRESS:
            pack = self.mux.pack()
        if pack is None or not pack.answering:
            # What i2c-dev reports when nothing ACKs the address on most adapters.
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        return pack

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        if self.mux is not None and i2c_addr == self.mux.address:
            if self.closed or not self.mux.answering:
                raise OSError(errno.EREMOTEIO, "Remote I/O error")
            self.writes.append((i2c_addr, value))
            self.mux.selected = value
            return
        pack = self._device(i2c_addr)
        self.writes.append((i2c_addr, value))
        pack.select(value)

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        for msg in i2c_msgs:
            if not msg.flags & I2C_M_RD:
                raise AssertionError("the driver only sends register numbers with write_byte")
            data = self._device(msg.addr).reply()[: msg.len]
            ctypes.memmove(msg.buf, data, len(data))
            msg.len = len(data)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeBuses:
    """The `open_bus` hook: bus number or path -> the FakeBus there (FileNotFoundError if none)."""

    buses: dict[str, FakeBus] = field(default_factory=dict)
    unplugged: set[str] = field(default_factory=set)
    opened: list[str] = field(default_factory=list)

    def add(self, bus: FakeBus) -> FakeBus:
        self.buses[bus.path] = bus
        return bus

    def open(self, bus: int | str) -> FakeBus:
        path = f"/dev/i2c-{bus}" if isinstance(bus, int) else bus
        if path in self.unplugged or path not in self.buses:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.opened.append(path)
        fake = self.buses[path]
        fake.closed = False  # a fresh file descriptor
        return fake


def two_buses(a: EmulatedPack, b: EmulatedPack, first: int = 1) -> FakeBuses:
    """Pack A on /dev/i2c-<first>, pack B on the next bus."""
    buses = FakeBuses()
    buses.add(FakeBus(f"/dev/i2c-{first}", {PACK_ADDRESS: a}))
    buses.add(FakeBus(f"/dev/i2c-{first + 1}", {PACK_ADDRESS: b}))
    return buses
