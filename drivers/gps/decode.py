"""NMEA 0183 GPS decoding: serial bytes in, validated position fixes out.

Pure and transport-free. `LineSplitter` cuts a byte stream into sentences;
`NmeaDecoder` parses GGA and RMC through pynmea2, merges the sentences of one
receiver epoch (same UTC time) into one `Fix`, and drops every fix the receiver
itself calls invalid. Bad input is counted in `NmeaStats`, never raised: a
noisy serial line must not stop the driver.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pynmea2

from fleet.drivers.readings import Location

KNOT_KMH = 1.852
# accuracy_m ~ HDOP x UERE. 5 m is the usual user-equivalent range error of a
# single-frequency consumer receiver; real errors vary with sky and multipath,
# so the figure is a rough 1-sigma horizontal estimate, not a guarantee.
UERE_M = 5.0
# NMEA caps a sentence at 82 characters; anything far longer is line noise.
MAX_LINE = 256

# Decoding a malformed field can surface as any of these from pynmea2.
_PARSE_ERRORS = (ValueError, TypeError, AttributeError, IndexError, KeyError, ArithmeticError)


@dataclass
class NmeaStats:
    """Counters of what came down the line (the driver logs them)."""

    sentences: int = 0  # well-formed, checksum-valid sentences of any type
    checksum_errors: int = 0
    garbage: int = 0  # lines that are not NMEA at all, or undecodable fields
    ignored: int = 0  # valid sentences of types we do not use (GSV, GSA, VTG ...)
    invalid_fixes: int = 0  # epochs the receiver itself flagged invalid
    fixes: int = 0


@dataclass(frozen=True, slots=True)
class Fix:
    """One receiver epoch with a valid position."""

    utc: dt.time | None
    location: Location
    satellites: int | None = None


class LineSplitter:
    """Cut a byte stream into lines; partial lines wait for their end."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self.overflows = 0

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        lines: list[str] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if len(raw) > self._max:
                self.overflows += 1
                continue
            lines.append(raw.decode("ascii", errors="replace").strip())
        if len(self._buf) > self._max:
            # A line without an end cannot be a sentence; drop it, keep memory bounded.
            self.overflows += 1
            self._buf.clear()
        return [line for line in lines if line]


@dataclass
class _Epoch:
    utc: dt.time | None
    gga: pynmea2.GGA | None = None
    rmc: pynmea2.RMC | None = None
    invalid: bool = False


def _num(value: object) -> float | None:
    """A finite float from a pynmea2 field, None when empty or nonsense."""
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _has_position(msg: pynmea2.GGA | pynmea2.RMC) -> bool:
    # pynmea2 turns an empty coordinate into 0.0, so look at the raw fields.
    return bool(msg.lat) and bool(msg.lat_dir) and bool(msg.lon) and bool(msg.lon_dir)


def _sentence_valid(msg: pynmea2.GGA | pynmea2.RMC) -> bool:
    if isinstance(msg, pynmea2.GGA):
        valid = (_num(msg.gps_qual) or 0) >= 1
    else:
        valid = msg.status == "A" and bool(msg.is_valid)
    return valid and _has_position(msg)


class NmeaDecoder:
    """Turn NMEA lines into merged, valid fixes.

    A receiver sends GGA and RMC for one epoch back to back with the same UTC
    time; they are merged so a fix carries HDOP (GGA) and speed/course (RMC).
    A fix is produced as soon as both are in, or when the next epoch starts
    (receivers that send only one of the two). If either sentence of an epoch
    says the fix is invalid, the epoch yields no position.
    """

    def __init__(self) -> None:
        self.stats = NmeaStats()
        self._epoch: _Epoch | None = None
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> list[Fix]:
        """Decode a chunk of the serial stream; partial lines wait for the next chunk."""
        overflows = self._lines.overflows
        fixes = [fix for line in self._lines.feed(data) for fix in self.feed_line(line)]
        self.stats.garbage += self._lines.overflows - overflows
        return fixes

    def feed_line(self, line: str) -> list[Fix]:
        """Decode one line; return the fixes it completes (zero, one or two)."""
        msg = self._parse(line)
        if msg is None:
            return []
        utc = msg.timestamp if isinstance(msg.timestamp, dt.time) else None
        out: list[Fix] = []
        if self._epoch is not None and (utc is None or utc != self._epoch.utc):
            out += self._close()
        if self._epoch is None:
            self._epoch = _Epoch(utc)
        epoch = self._epoch
        if not _sentence_valid(msg):
            epoch.invalid = True
        if isinstance(msg, pynmea2.GGA):
            epoch.gga = msg
        else:
            epoch.rmc = msg
        if utc is None or (epoch.gga is not None and epoch.rmc is not None):
            out += self._close()
        return out

    def flush(self) -> list[Fix]:
        """Close the pending epoch (end of stream)."""
        return self._close()

    def _parse(self, line: str) -> pynmea2.GGA | pynmea2.RMC | None:
        if not line.startswith("$"):
            self.stats.garbage += 1
            return None
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ChecksumError:
            self.stats.checksum_errors += 1
            return None
        except pynmea2.SentenceTypeError:
            self.stats.ignored += 1
            return None
        except _PARSE_ERRORS:
            self.stats.garbage += 1
            return None
        self.stats.sentences += 1
        if isinstance(msg, pynmea2.GGA | pynmea2.RMC):
            return msg
        self.stats.ignored += 1
        return None

    def _close(self) -> list[Fix]:
        epoch, self._epoch = self._epoch, None
        if epoch is None:
            return []
        try:
            fix = None if epoch.invalid else _merge(epoch)
        except _PARSE_ERRORS:
            fix = None
        if fix is None:
            self.stats.invalid_fixes += 1
            return []
        self.stats.fixes += 1
        return [fix]


def _merge(epoch: _Epoch) -> Fix | None:
    source = epoch.rmc if epoch.rmc is not None else epoch.gga
    if source is None:
        return None
    lat, lon = _num(source.latitude), _num(source.longitude)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    accuracy = speed = heading = None
    satellites: int | None = None
    if epoch.gga is not None:
        hdop = _num(epoch.gga.horizontal_dil)
        if hdop is not None and hdop > 0:
            accuracy = round(hdop * UERE_M, 1)
        sats = _num(epoch.gga.num_sats)
        satellites = int(sats) if sats is not None and sats >= 0 else None
    if epoch.rmc is not None:
        knots = _num(epoch.rmc.spd_over_grnd)
        if knots is not None and knots >= 0:
            speed = round(knots * KNOT_KMH, 3)
        course = _num(epoch.rmc.true_course)
        if course is not None:
            heading = course % 360.0
    location = Location(
        lat=round(lat, 7),
        lon=round(lon, 7),
        accuracy_m=accuracy,
        speed_kmh=speed,
        heading_deg=heading,
    )
    return Fix(utc=epoch.utc, location=location, satellites=satellites)
