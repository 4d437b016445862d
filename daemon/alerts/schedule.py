"""Shift times and local clock times, in the configured zone (DST included)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAY = timedelta(days=1)


def next_shift_start_ms(after_ms: int, shifts: list[time], zone: ZoneInfo) -> int | None:
    """The first shift start strictly after ``after_ms``; None without shifts."""
    if not shifts:
        return None
    local = datetime.fromtimestamp(after_ms / 1000, zone)
    day = local.date() - _DAY  # a shift start of yesterday never qualifies, but is cheap
    best: int | None = None
    for offset in range(3):
        for start in shifts:
            # A wall time that DST skips resolves with the offset before the change.
            at = datetime.combine(day + offset * _DAY, start, tzinfo=zone)
            at_ms = round(at.timestamp() * 1000)
            if at_ms > after_ms and (best is None or at_ms < best):
                best = at_ms
    return best


def local_hhmm(at_ms: int, zone: ZoneInfo, now_ms: int) -> str:
    """ "21:04" for a time today (local), "Nov 28 21:04" for another day."""
    at = datetime.fromtimestamp(at_ms / 1000, zone)
    now = datetime.fromtimestamp(now_ms / 1000, zone)
    if at.date() == now.date():
        return f"{at:%H:%M}"
    return f"{at:%b} {at.day} {at:%H:%M}"


def iso_utc(at_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and Z, as in the wire contract."""
    at = datetime.fromtimestamp(at_ms // 1000, UTC)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{at_ms % 1000:03d}Z"
