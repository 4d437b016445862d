"""The read-only request schedule: which registers are polled, and the only request encoder.

This module is the single place that turns a request into bytes, and it can only
build register reads (command 0x01). Write commands (0x02, 0x03) have no encoder
anywhere in the driver, and a read that would even touch the lock, power or
configuration registers is refused: the driver never changes a scooter.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.drivers.ninebot.frames import Frame, Framing, encode
from fleet.drivers.ninebot.registers import ModelProfile, Target

READ = 0x01
NINEBOT_READ_REPLY = 0x04  # Xiaomi answers a read with 0x01 again
WRITE_COMMANDS = frozenset((0x02, 0x03))

# Lock 0x70, unlock 0x71, speed limits 0x72-0x75, power off 0x79, KERS / cruise /
# tail light 0x7B-0x7D (protocols.md §1.5.1): never addressed, not even for reading.
FORBIDDEN_REGISTERS = frozenset(range(0x70, 0x7E))

# Our own bus address: 0x3D is "PC connected through the serial port"; the
# phone app's 0x3E is what a BLE-side scooter expects.
HOST_SERIAL = 0x3D
HOST_BLE = 0x3E

_XIAOMI_REPLY_OFFSET = 3  # master->ESC 0x20 is answered from ESC->master 0x23
_MAX_READ_BYTES = 0x40  # the longest read the apps issue is 32 bytes; leave headroom


@dataclass(frozen=True, slots=True)
class ReadRequest:
    target: Target
    reg: int
    nbytes: int
    every: int = 1  # sent on cycles where cycle % every == 0

    def __post_init__(self) -> None:
        if not 0 <= self.reg <= 0xFF or not 2 <= self.nbytes <= _MAX_READ_BYTES:
            raise ValueError(f"read out of range: reg {self.reg:#x}, {self.nbytes} bytes")
        if self.nbytes % 2:
            raise ValueError("registers are 16-bit words: nbytes must be even")
        last = self.reg + self.nbytes // 2 - 1
        touched = set(range(self.reg, last + 1))
        if touched & FORBIDDEN_REGISTERS:
            raise ValueError(f"read {self.reg:#x}..{last:#x} touches lock/power/config registers")
        if self.every < 1:
            raise ValueError("every must be >= 1")


# Quick block, range, BMS status block each cycle; firmware and cells less often.
SCHEDULE: tuple[ReadRequest, ...] = (
    ReadRequest(Target.ESC, 0xB0, 32),  # error, alarm, state bits, %, speed, odometer, trip, temp
    # Remaining range moves slowly: every 10th cycle keeps it fresh at a third less traffic.
    ReadRequest(Target.ESC, 0x24, 4, every=10),  # actual and predicted remaining range
    ReadRequest(Target.BMS, 0x30, 24),  # status bits, mAh, %, current, voltage, temps ... health
    ReadRequest(Target.BMS, 0x40, 32, every=10),  # cell voltages 1-16
    ReadRequest(Target.ESC, 0x1A, 2, every=60),  # firmware version
)


def requests_for_cycle(
    cycle: int, schedule: tuple[ReadRequest, ...] = SCHEDULE
) -> list[ReadRequest]:
    return [r for r in schedule if cycle % r.every == 0]


def encode_read(req: ReadRequest, model: ModelProfile, host: int) -> bytes:
    """The bytes of a register read of `req` in the model's framing (command 0x01, always)."""
    if model.framing is Framing.NINEBOT:
        frame = Frame(
            Framing.NINEBOT,
            src=host,
            dst=req.target,
            cmd=READ,
            arg=req.reg,
            payload=bytes([req.nbytes]),
        )
    else:
        frame = Frame(
            Framing.XIAOMI, addr=req.target, cmd=READ, arg=req.reg, payload=bytes([req.nbytes])
        )
    return encode(frame)


def read_reply_source(frame: Frame) -> Target | None:
    """Which unit sent `frame` if it is a register-read reply from the ESC or BMS, else None.

    Replies addressed to someone else (the dashboard, the app) are accepted too:
    on a shared bus they carry the same register meanings.
    """
    if frame.framing is Framing.NINEBOT:
        if frame.cmd != NINEBOT_READ_REPLY:
            return None
        unit = frame.src
    else:
        if frame.cmd != READ:
            return None
        unit = frame.addr - _XIAOMI_REPLY_OFFSET
    try:
        return Target(unit)
    except ValueError:
        return None
