"""Which written points arrived too late for the roll-up's CQs, and the hours they need recomputed.

`late_points` runs on the writer's thread after every batch InfluxDB confirmed, so it is
built for the common case - nothing late - to cost one C-level pass: each spool row is one
message, i.e. one reading's lines (schema.reading_lines stamps every one with the reading's
`ts`) or a single line, so the last 13 characters of a row are its timestamp in ms (13 digits
from 2001 to 2286, where digit strings compare as numbers do). Only a batch whose smallest
such stamp is before the limit is looked at line by line.

`PendingHours` keeps the hours in the spool's file (its `meta` table), written before the
batch leaves the spool: a crash in between writes the batch again and notes the hours again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from fleet.daemon.collector import rollup
from fleet.daemon.spool import Spool, SpoolRow
from fleet.drivers.backoff import Backoff

_LOG = logging.getLogger(__name__)

_STAMP_DIGITS = 13
# A rolled-up measurement's line starts with its name and then a tag or the fields.
_ROLLED_UP = tuple(f"{m}{sep}" for m in rollup.measurements() for sep in (",", " "))
_LINES = attrgetter("lines")


def _last_stamps(rows: Sequence[SpoolRow]) -> Iterable[str]:
    return (text[-_STAMP_DIGITS:] for text in map(_LINES, rows))


def late_points(rows: Sequence[SpoolRow], before_ms: int) -> tuple[int, set[int]]:
    """How many points of the rolled-up measurements are stamped before `before_ms`, and
    their hours. A line whose timestamp does not read is skipped (the spool holds only
    lines the collector made, so this is defence, not a case)."""
    if not rows:
        return 0, set()
    limit = str(before_ms)
    # A stamp that is not 13 digits (a space or '-' sorts before '0') falls to the slow path.
    if len(limit) == _STAMP_DIGITS and min(_last_stamps(rows)) >= limit:
        return 0, set()
    count = 0
    hours: set[int] = set()
    for row in rows:
        text = row.lines
        stamp = text[-_STAMP_DIGITS:]
        if len(limit) == _STAMP_DIGITS and stamp >= limit and stamp.isdigit():
            continue
        for line in text.split("\n") if row.n > 1 else (text,):
            if not line.startswith(_ROLLED_UP):
                continue
            try:
                ts = int(line[line.rfind(" ") + 1 :])
            except ValueError:
                continue
            if ts < before_ms:
                count += 1
                hours.add(rollup.hour_of(ts))
    return count, hours


@dataclass(slots=True)
class _Hour:
    generation: int  # bumped by every batch with late points of this hour
    marked: float  # monotonic time of the last such batch (or of the start)
    failures: int = 0  # recomputations in a row that failed
    not_before: float = 0.0  # monotonic: no retry before this


@dataclass(frozen=True, slots=True)
class Taken:
    """An hour handed to the backfill, as it was when handed over."""

    hour: int
    generation: int


class PendingHours:
    """The UTC hours whose roll-up must be recomputed, durable in the spool's `meta` table.

    Thread-safe: the writer adds, the backfill takes and removes. The file is written only
    when the set changes, first, and memory follows only once it is written: a failed write
    leaves both as they were, so the caller's retry does it again.
    """

    def __init__(
        self,
        spool: Spool,
        key: str,
        *,
        settle_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spool = spool
        self._key = key
        self._settle_s = settle_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        now = monotonic()
        self._hours = {hour: _Hour(0, now) for hour in self._load()}
        if self._hours:
            _LOG.info(
                "%d hours of the roll-up still to recompute from before (oldest %s)",
                len(self._hours),
                utc_hour(min(self._hours)),
            )

    def _load(self) -> list[int]:
        text = self._spool.get_meta(self._key)
        if text is None:
            return []
        try:
            hours = json.loads(text)
            if isinstance(hours, list) and all(type(h) is int for h in hours):
                return hours
        except ValueError:
            pass
        _LOG.error("unreadable pending roll-up hours in the spool (%.200s): starting none", text)
        return []

    def _save(self, hours: Iterable[int]) -> None:
        self._spool.set_meta(self._key, json.dumps(sorted(hours)))

    def __len__(self) -> int:
        with self._lock:
            return len(self._hours)

    def hours(self) -> list[int]:
        with self._lock:
            return sorted(self._hours)

    def note(self, hours: Iterable[int]) -> int:
        """These hours got late points; returns how many were not pending yet."""
        hours = set(hours)
        with self._lock:
            now = self._monotonic()
            fresh = {h for h in hours if h not in self._hours}
            if fresh:
                self._save([*self._hours, *fresh])  # raises sqlite3.Error before any change
            for hour in hours:
                entry = self._hours.get(hour)
                if entry is None:
                    self._hours[hour] = _Hour(0, now)
                else:
                    entry.generation += 1
                    entry.marked = now
            return len(fresh)

    def due(self, limit: int) -> list[Taken]:
        """Up to `limit` hours, oldest first, settled and not waiting for a retry."""
        with self._lock:
            now = self._monotonic()
            ready = [
                Taken(hour, e.generation)
                for hour, e in self._hours.items()
                if now - e.marked >= self._settle_s and now >= e.not_before
            ]
        ready.sort(key=attrgetter("hour"))
        return ready[:limit]

    def done(self, taken: Iterable[Taken]) -> None:
        """Recomputed: each hour goes unless late points came for it meanwhile."""
        taken = list(taken)
        with self._lock:
            gone = {
                t.hour
                for t in taken
                if (e := self._hours.get(t.hour)) is not None and e.generation == t.generation
            }
            if not gone:
                return
            self._save(h for h in self._hours if h not in gone)
            for hour in gone:
                del self._hours[hour]
            for t in taken:  # those that stay were not refused: their next try is not a retry
                if (e := self._hours.get(t.hour)) is not None:
                    e.failures = 0

    def failed(self, taken: Iterable[Taken], backoff: Backoff) -> float:
        """Not recomputed: each hour waits before its next try; returns the shortest wait."""
        with self._lock:
            now = self._monotonic()
            waits = []
            for t in taken:
                entry = self._hours.get(t.hour)
                if entry is not None:
                    entry.failures += 1
                    wait = backoff.delay(entry.failures)
                    entry.not_before = now + wait
                    waits.append(wait)
            return min(waits, default=0.0)


def utc_hour(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:00 UTC", time.gmtime(ms / 1000))
