"""A Ninebot / Xiaomi scooter that answers register reads with real protocol bytes.

`ScooterState` holds the scooter in physical units; `NinebotEmulator` turns it
into register words and answers read requests in the model's framing, using its
own small frame code written from the reference (protocols.md §1.2), so the
driver's codec is checked against an independent implementation. It records
every request it gets, so tests can prove the driver never wrote anything.

`PtyScooter` puts an emulator on the master side of a real pseudo-terminal pair
behind a stable symlink (like /dev/serial/by-id/...), with `unplug()`/`plug()`
for "the adapter vanished" and `silent` for "the data wire is off". One thread
per scooter, blocked in select() while idle, so a bench can run a hundred.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from dataclasses import dataclass, field
from pathlib import Path

_NINEBOT = b"\x5a\xa5"
_XIAOMI = b"\x55\xaa"
ESC, BMS = 0x20, 0x22
# Speed register units per model: ES/Max 0.1 km/h, M365 m/h (protocols.md §1.5.1).
SPEED_UNITS_PER_KMH = {"es": 10.0, "max": 10.0, "m365": 1000.0, "m365_pro": 1000.0}
XIAOMI_MODELS = frozenset({"m365", "m365_pro"})


def _ck(body: bytes) -> bytes:
    return ((sum(body) & 0xFFFF) ^ 0xFFFF).to_bytes(2, "little")


def ninebot_frame(src: int, dst: int, cmd: int, arg: int, payload: bytes = b"") -> bytes:
    body = bytes([len(payload), src, dst, cmd, arg]) + payload
    return _NINEBOT + body + _ck(body)


def xiaomi_frame(addr: int, cmd: int, arg: int, payload: bytes = b"") -> bytes:
    body = bytes([len(payload) + 2, addr, cmd, arg]) + payload
    return _XIAOMI + body + _ck(body)


def _u16(v: float) -> int:
    return round(v) & 0xFFFF


@dataclass
class ScooterState:
    model: str = "es"
    battery_pct: int = 87
    speed_kmh: float = 12.3
    avg_speed_kmh: float = 10.0
    odometer_m: int = 1_234_567
    trip_m: int = 4_560
    range_km: float = 21.0
    predicted_range_km: float = 26.25
    frame_temp_c: float = 24.5
    error_code: int = 0
    alarm_code: int = 0
    locked: bool = False
    firmware: int = 0x0139
    bms_pct: int = 86
    remaining_mah: int = 6_120
    current_a: float = -3.2  # contract sign: negative while discharging
    voltage_v: float = 38.47
    temp1_c: int = 24
    temp2_c: int = 27
    health_pct: int = 96
    charging: bool = False
    charger_plugged: bool = False
    cells_mv: list[int] = field(default_factory=lambda: [3847 + i for i in range(10)])

    def esc_words(self) -> dict[int, int]:
        speed = _u16(self.speed_kmh * SPEED_UNITS_PER_KMH[self.model])
        avg = _u16(self.avg_speed_kmh * SPEED_UNITS_PER_KMH[self.model])
        state_bits = (1 << 11) | (2 if self.locked else 0)
        return {
            0x1A: self.firmware,
            0x24: _u16(self.range_km * 100),
            0x25: _u16(self.predicted_range_km * 100),
            0xB0: self.error_code,
            0xB1: self.alarm_code,
            0xB2: state_bits,
            0xB3: 0,
            0xB4: self.battery_pct,
            0xB5: speed,
            0xB6: avg,
            0xB7: self.odometer_m & 0xFFFF,
            0xB8: self.odometer_m >> 16,
            0xB9: self.trip_m // 10,
            0xBA: 600,
            0xBB: _u16(self.frame_temp_c * 10),
            0xBC: 250,
            0xBD: 0xFFFF,
            0xBE: 0,
            0xBF: 0xFFFF,
        }

    def bms_words(self) -> dict[int, int]:
        status = 0x0003 | (0x40 if self.charging else 0x20) | (0x80 if self.charger_plugged else 0)
        words = {
            0x30: status,
            0x31: self.remaining_mah,
            0x32: self.bms_pct,
            0x33: _u16(-self.current_a * 100),  # the BMS counts discharge positive
            0x34: _u16(self.voltage_v * 100),
            0x35: (self.temp1_c + 20) | ((self.temp2_c + 20) << 8),
            0x3B: self.health_pct,
        }
        for i in range(16):
            words[0x40 + i] = self.cells_mv[i] if i < len(self.cells_mv) else 0
        return words


@dataclass(frozen=True)
class Request:
    cmd: int
    target: int
    reg: int
    payload: bytes


class NinebotEmulator:
    """Bytes in (requests, in any pieces) -> bytes out (replies)."""

    def __init__(self, state: ScooterState | None = None) -> None:
        self.state = state or ScooterState()
        self.requests: list[Request] = []
        self.silent = False  # the data wire is disconnected: requests get no answer
        # Reads longer than this get no answer, as a unit with a smaller reply buffer
        # might do (the public notes show no read over 32 bytes); None: any length.
        self.max_read_bytes: int | None = None
        self._buf = bytearray()
        self._lock = threading.Lock()

    @property
    def xiaomi(self) -> bool:
        return self.state.model in XIAOMI_MODELS

    def feed(self, data: bytes) -> bytes:
        with self._lock:
            self._buf += data
            out = bytearray()
            for req in self._take_requests():
                self.requests.append(req)
                if not self.silent:
                    out += self._answer(req)
            return bytes(out)

    def _take_requests(self) -> list[Request]:
        reqs: list[Request] = []
        buf = self._buf
        header = _XIAOMI if self.xiaomi else _NINEBOT
        while True:
            i = buf.find(header)
            if i < 0:
                del buf[: max(0, len(buf) - 1)]
                return reqs
            del buf[:i]
            if len(buf) < 3:
                return reqs
            total = buf[2] + (6 if self.xiaomi else 9)
            if len(buf) < total:
                return reqs
            body = bytes(buf[2 : total - 2])
            if _ck(body) != bytes(buf[total - 2 : total]):
                del buf[:1]
                continue
            del buf[:total]
            if self.xiaomi:
                reqs.append(Request(cmd=body[2], target=body[1], reg=body[3], payload=body[4:]))
            else:
                reqs.append(Request(cmd=body[3], target=body[2], reg=body[4], payload=body[5:]))

    def _answer(self, req: Request) -> bytes:
        if req.cmd != 0x01 or not req.payload:
            return b""  # a real scooter would act on writes; this one only records them
        words = {ESC: self.state.esc_words, BMS: self.state.bms_words}.get(req.target)
        if words is None:
            return b""
        if self.max_read_bytes is not None and req.payload[0] > self.max_read_bytes:
            return b""
        table = words()
        nwords = req.payload[0] // 2
        data = b"".join(table.get(req.reg + i, 0).to_bytes(2, "little") for i in range(nwords))
        if self.xiaomi:
            return xiaomi_frame(req.target + 3, 0x01, req.reg, data)
        return ninebot_frame(req.target, 0x3D, 0x04, req.reg, data)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.cmd != 0x01]


class PtyScooter:
    """An emulator behind a real PTY pair; the driver opens `port` (a symlink to the slave)."""

    def __init__(self, port: Path, emulator: NinebotEmulator | None = None) -> None:
        self.port = port
        self.emulator = emulator or NinebotEmulator()
        self._master = -1
        self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe()
        self.plug()

    def plug(self) -> None:
        """A (new) adapter appears under the same name, like a udev by-id link."""
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self._master, self._slave = master, slave
        tmp = self.port.with_name(self.port.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.port)
        self._thread = threading.Thread(target=self._serve, args=(master,), daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        """The adapter vanishes: the link goes away and the driver's open port fails."""
        with contextlib.suppress(FileNotFoundError):
            self.port.unlink()
        self._stop_thread()
        os.close(self._master)
        os.close(self._slave)

    def close(self) -> None:
        self.unplug()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _stop_thread(self) -> None:
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        os.read(self._stop_r, 1)
        self._thread = None

    def _serve(self, master: int) -> None:
        while True:
            ready, _, _ = select.select([master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            reply = self.emulator.feed(data)
            if reply:
                os.write(master, reply)
