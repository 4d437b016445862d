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
from fleet.drivers.readings import State

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
# The longest read documented (protocols.md §1.4-§1.6: the apps' quick block, a BMS tool's
# 0x10 / 0x30 / 0x40 blocks) is 32 bytes; 64 fits both framings' length byte. A unit that
# does not answer a longer read is asked its `split` reads instead (below).
_MAX_READ_BYTES = 0x40


@dataclass(frozen=True, slots=True)
class ReadRequest:
    target: Target
    reg: int
    nbytes: int
    every: int = 1  # sent on cycles where cycle % every == 0
    # The documented smaller reads covering what this one reads, for a unit that leaves
    # it unanswered (a longer read than any public capture shows: see SCHEDULE).
    split: tuple[ReadRequest, ...] = ()

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
        for part in self.split:
            if part.target != self.target or part.split:
                raise ValueError("a split read is a plain read of the same unit")

    @property
    def last_reg(self) -> int:
        return self.reg + self.nbytes // 2 - 1


# Two exchanges a cycle (one per unit: the bus is half-duplex, and every exchange is a
# write, a wake-up and a reply to parse), a third every 10th cycle.
SCHEDULE: tuple[ReadRequest, ...] = (
    ReadRequest(Target.ESC, 0xB0, 32),  # error, alarm, state bits, %, speed, odometer, trip, temp
    # Firmware (0x1A) through remaining range (0x24, 0x25) in one documented-size read:
    # both move slowly, so every 10th cycle keeps them fresh.
    ReadRequest(
        Target.ESC,
        0x1A,
        24,
        every=10,
        split=(ReadRequest(Target.ESC, 0x24, 4), ReadRequest(Target.ESC, 0x1A, 2, every=6)),
    ),
    # Status block and cell voltages (0x30-0x4F) in one 64-byte read: inferred, no public
    # capture reads more than 32 bytes at once; a BMS that stays silent to it is asked the
    # two documented blocks instead (status every cycle, cells every 10th).
    ReadRequest(
        Target.BMS,
        0x30,
        64,
        split=(ReadRequest(Target.BMS, 0x30, 24), ReadRequest(Target.BMS, 0x40, 32, every=10)),
    ),
)


def requests_for_cycle(
    cycle: int, schedule: tuple[ReadRequest, ...] = SCHEDULE
) -> list[ReadRequest]:
    return [r for r in schedule if cycle % r.every == 0]


def split_schedule(
    schedule: tuple[ReadRequest, ...] = SCHEDULE, only: ReadRequest | None = None
) -> tuple[ReadRequest, ...]:
    """`schedule` with its combined reads (or just `only`) replaced by their smaller reads.

    A split read keeps the combined read's rhythm: its own `every` counts the
    combined read's turns (the cells of a combined read asked every cycle go
    every 10th cycle; the firmware of one asked every 10th, every 60th), so the
    split schedule is exactly the one of the documented read sizes.
    """
    out: list[ReadRequest] = []
    for req in schedule:
        if not req.split or (only is not None and req != only):
            out.append(req)
            continue
        out.extend(
            ReadRequest(p.target, p.reg, p.nbytes, every=req.every * p.every) for p in req.split
        )
    return tuple(out)


def poll_interval(
    state: State | None, *, riding_s: float, idle_s: float, charging_s: float
) -> float:
    """Seconds to the next poll cycle after a reading in `state` (None: nothing answered).

    Fast while the scooter moves, is faulted, or its state is unknown (an unanswered
    poll must be followed up quickly to see it go offline); slow while it stands or
    charges, where one slow interval is the longest a change (ridden away, unplugged)
    goes unseen. Never slower than the fast interval is fast.
    """
    if state in (State.IDLE, State.DOCKED, State.OFF):
        return max(idle_s, riding_s)
    if state is State.CHARGING:
        return max(charging_s, riding_s)
    return riding_s


def until_next_tick(started: float, now: float, interval: float) -> float:
    """Seconds from `now` to the first multiple of `interval` after `started` (0 if past).

    On the loop's monotonic clock: every driver of the agent polling at the same
    interval - serial and BLE alike - starts its cycles at the same instants, so
    the event loop wakes once a tick for all of them instead of once per scooter,
    and their readings reach the outbox together - one transaction (one fsync) and
    one publish round for all. Each scooter is on its own port or BLE link, so
    nothing on the wire changes. A cycle that overran its interval is followed at
    once, as before the ticks.
    """
    return max(0.0, started - started % interval + interval - now)


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
