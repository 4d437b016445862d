"""An NMEA 0183 talker on the master side of a real pseudo-terminal pair.

The driver opens `talker.port` (the slave, a real /dev/pts/N) exactly as it
would open a GPS; a thread writes the current script of sentences to the
master side over and over, like a receiver that talks whether or not anybody
listens. Sentences are built here with real checksums.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import operator
import os
import threading
import time
import tty
from collections.abc import Iterator, Sequence


def checksum(body: str) -> str:
    """XOR of every character between `$` and `*`, two uppercase hex digits."""
    return f"{functools.reduce(operator.xor, map(ord, body), 0):02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def _coord(value: float, pos: str, neg: str, degree_digits: int) -> tuple[str, str]:
    hemi = pos if value >= 0 else neg
    value = abs(value)
    degrees = int(value)
    minutes = (value - degrees) * 60
    return f"{degrees:0{degree_digits}d}{minutes:09.6f}", hemi


def gga(
    utc: str,
    lat: float,
    lon: float,
    *,
    quality: int = 1,
    sats: int = 8,
    hdop: float | None = 0.9,
    talker: str = "GP",
) -> str:
    la, ns = _coord(lat, "N", "S", 2)
    lo, ew = _coord(lon, "E", "W", 3)
    hd = "" if hdop is None else f"{hdop:.1f}"
    return sentence(
        f"{talker}GGA,{utc},{la},{ns},{lo},{ew},{quality},{sats:02d},{hd},45.0,M,46.9,M,,"
    )


def rmc(
    utc: str,
    lat: float,
    lon: float,
    *,
    status: str = "A",
    knots: float = 0.0,
    course: float | None = 0.0,
    date: str = "291126",
    talker: str = "GP",
) -> str:
    la, ns = _coord(lat, "N", "S", 2)
    lo, ew = _coord(lon, "E", "W", 3)
    mode = "A" if status == "A" else "N"
    crs = "" if course is None else f"{course:.1f}"
    return sentence(
        f"{talker}RMC,{utc},{status},{la},{ns},{lo},{ew},{knots:.1f},{crs},{date},,,{mode}"
    )


class NmeaTalker:
    """A GPS receiver behind a PTY. Use as a context manager."""

    def __init__(self, period_s: float = 0.02) -> None:
        self._period = period_s
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        # A real receiver never blocks on a listener: drop output when the tty buffer is full.
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.port = os.ttyname(self._slave)
        self._script: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._talk, name="nmea-talker", daemon=True)
        self.chunks_written = 0

    def play(self, lines: Sequence[str | bytes]) -> None:
        """Replace the looped script; each item is one write (a str gets CRLF appended)."""
        script = [x if isinstance(x, bytes) else (x + "\r\n").encode() for x in lines]
        with self._lock:
            self._script = script

    def silence(self) -> None:
        self.play([])

    def hang_up(self) -> None:
        """Close the master side: the driver's port gets EOF / EIO, as when a USB GPS is pulled."""
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._master)
        self._master = -1

    def __enter__(self) -> NmeaTalker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _talk(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                script = list(self._script)
            for chunk in script or [b""]:
                if self._stop.is_set():
                    return
                if chunk:
                    with contextlib.suppress(BlockingIOError):
                        os.write(self._master, chunk)
                        self.chunks_written += 1
                time.sleep(self._period)


@contextlib.contextmanager
def talker(period_s: float = 0.02) -> Iterator[NmeaTalker]:
    with NmeaTalker(period_s) as t:
        yield t
