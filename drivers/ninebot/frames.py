"""Ninebot `5A A5` and Xiaomi `55 AA` frames: checksum, encoding and an incremental decoder.

Both framings share one checksum: `(sum(bytes from the length byte through the
payload) & 0xFFFF) ^ 0xFFFF`, little-endian. They differ in header and in what
the length byte counts (reference protocols.md §1.2):

    Ninebot  5A A5 | L | SRC | DST | CMD | ARG | PAYLOAD[L]   | CK_LO CK_HI   (L + 9 bytes)
    Xiaomi   55 AA | L | ADDR | CMD | ARG | PAYLOAD[L - 2]    | CK_LO CK_HI   (L + 6 bytes)

The decoder never raises on input: garbage is skipped, a frame with a bad
checksum is dropped one byte at a time (so a real frame hidden inside a broken
one is still found), and a frame that stops arriving is abandoned after a
timeout. That makes it safe for a half-duplex bus tap and for BLE notifications
cut into 20-byte pieces alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

NINEBOT_HEADER = b"\x5a\xa5"
XIAOMI_HEADER = b"\x55\xaa"
_HEADER_FIRST = frozenset((NINEBOT_HEADER[0], XIAOMI_HEADER[0]))
_HEADERS = (NINEBOT_HEADER, XIAOMI_HEADER)

# Bytes around the payload: header 2 + length/addr/cmd/arg (+ src/dst) + checksum 2.
_NINEBOT_OVERHEAD = 9
_XIAOMI_OVERHEAD = 6  # L already counts CMD and ARG
# NinebotCrypto keeps `5A A5 L` in clear and adds a 4-byte MAC and a 2-byte counter
# instead of the plain checksum (protocols.md §1.7 A): an encrypted frame is L + 13 bytes.
_CRYPTO_FRAME_OVERHEAD = 13


class Framing(Enum):
    NINEBOT = "ninebot"  # 5A A5: ES, Max G30, E, F, Segway-branded
    XIAOMI = "xiaomi"  # 55 AA: M365, M365 Pro, 1S, Pro 2, Lite


@dataclass(frozen=True, slots=True)
class Frame:
    """One checksum-valid frame. Ninebot frames use `src`/`dst`; Xiaomi frames use `addr`."""

    framing: Framing
    cmd: int
    arg: int
    payload: bytes
    src: int = 0
    dst: int = 0
    addr: int = 0


def checksum(body: bytes | bytearray | memoryview) -> bytes:
    """The two checksum bytes for `body` (length byte through end of payload)."""
    return ((sum(body) & 0xFFFF) ^ 0xFFFF).to_bytes(2, "little")


def encode(frame: Frame) -> bytes:
    """The wire bytes of `frame`. Raises ValueError if a field does not fit its byte."""
    if frame.framing is Framing.NINEBOT:
        head = [len(frame.payload), frame.src, frame.dst, frame.cmd, frame.arg]
        magic = NINEBOT_HEADER
    else:
        head = [len(frame.payload) + 2, frame.addr, frame.cmd, frame.arg]
        magic = XIAOMI_HEADER
    if any(not 0 <= b <= 0xFF for b in head):
        raise ValueError(f"frame field out of byte range: {head}")
    body = bytes(head) + frame.payload
    return magic + body + checksum(body)


def _frame_length(buf: bytearray, start: int) -> int | None:
    """Total length of the frame whose header is at `start`, or None when not knowable yet.

    Returns 0 for a Xiaomi header whose length byte cannot be valid (L < 2).
    """
    if len(buf) < start + 3:
        return None
    length = buf[start + 2]
    if buf[start] == NINEBOT_HEADER[0]:
        return length + _NINEBOT_OVERHEAD
    if length < 2:
        return 0
    return length + _XIAOMI_OVERHEAD


def _parse_at(buf: bytearray, start: int, total: int) -> Frame | None:
    """The frame at `start` (all `total` bytes present) if its checksum is right."""
    body = memoryview(buf)[start + 2 : start + total - 2]
    if checksum(body) != bytes(buf[start + total - 2 : start + total]):
        return None
    if buf[start] == NINEBOT_HEADER[0]:
        return Frame(
            Framing.NINEBOT,
            src=body[1],
            dst=body[2],
            cmd=body[3],
            arg=body[4],
            payload=bytes(body[5:]),
        )
    return Frame(Framing.XIAOMI, addr=body[1], cmd=body[2], arg=body[3], payload=bytes(body[4:]))


def _find_header(buf: bytearray) -> int:
    """Index of the first header; a lone trailing first byte counts (its pair may follow)."""
    if buf.startswith(_HEADERS):  # the usual case: a reply starts the buffer
        return 0
    found = [i for i in (buf.find(NINEBOT_HEADER), buf.find(XIAOMI_HEADER)) if i >= 0]
    if found:
        return min(found)
    n = len(buf)
    if n and buf[-1] in _HEADER_FIRST:
        return n - 1
    return n


@dataclass(slots=True)
class DecoderStats:
    frames: int = 0
    bad_checksum: int = 0
    timeouts: int = 0
    skipped_bytes: int = 0


class FrameDecoder:
    """Incremental decoder for both framings: feed bytes as they come, get whole frames out.

    A partial frame older than `timeout_s` (by the `now` values passed in, monotonic
    seconds) is abandoned and the bytes after its first header byte are searched again.
    """

    def __init__(self, timeout_s: float = 0.5) -> None:
        self._buf = bytearray()
        self._timeout_s = timeout_s
        self._pending_since: float | None = None
        self.stats = DecoderStats()

    @property
    def pending(self) -> bool:
        """True while a frame has started but not completed."""
        return self._pending_since is not None

    def feed(self, data: bytes | bytearray, now: float | None = None) -> list[Frame]:
        """Add received bytes and return the frames completed by them, in order."""
        if now is None:
            now = time.monotonic()
        self._buf += data
        return self._drain(now)

    def expire(self, now: float | None = None) -> list[Frame]:
        """Abandon a partial frame that has waited past the timeout; may free later frames."""
        if now is None:
            now = time.monotonic()
        return self._drain(now)

    def reset(self) -> None:
        """Forget buffered bytes (the link was re-established)."""
        self._buf.clear()
        self._pending_since = None

    def _drain(self, now: float) -> list[Frame]:
        out: list[Frame] = []
        buf = self._buf
        while buf:
            start = _find_header(buf)
            if start:
                self.stats.skipped_bytes += start
                del buf[:start]
                self._pending_since = None
                if not buf:
                    break
            total = _frame_length(buf, 0)
            if total == 0:
                self._drop_one()
                continue
            if total is None or len(buf) < total:
                if self._pending_since is None:
                    self._pending_since = now
                elif now - self._pending_since > self._timeout_s:
                    self.stats.timeouts += 1
                    self._drop_one()
                    continue
                break
            frame = _parse_at(buf, 0, total)
            if frame is None:
                self.stats.bad_checksum += 1
                self._drop_one()
                continue
            del buf[:total]
            self._pending_since = None
            self.stats.frames += 1
            out.append(frame)
        return out

    def _drop_one(self) -> None:
        # Dropping only the first header byte lets a real frame that began inside
        # the discarded one be found on the next pass.
        del self._buf[:1]
        self.stats.skipped_bytes += 1
        self._pending_since = None


def looks_encrypted(burst: bytes | bytearray) -> bool:
    """True if `burst` (one reassembled BLE reply) has the NinebotCrypto shape.

    An encrypted reply keeps `5A A5 L` in clear and is exactly L + 13 bytes long,
    where a plain one is L + 9 and carries a valid checksum at its end.
    """
    if len(burst) < _CRYPTO_FRAME_OVERHEAD or bytes(burst[:2]) != NINEBOT_HEADER:
        return False
    length = burst[2]
    if len(burst) != length + _CRYPTO_FRAME_OVERHEAD:
        return False
    plain_total = length + _NINEBOT_OVERHEAD
    return _parse_at(bytearray(burst), 0, plain_total) is None
