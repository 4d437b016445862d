"""Which reading is newer, and how old it really is, when clocks can be wrong.

Two clocks meet in every reading: the device's (its ``ts``, set by a sub-station
box or a phone) and the collector's (``now`` when it arrives). Either can be
wrong, and the engine must not trust one over the other blindly:

- **Order** comes from ``seq`` when the device sends one: a higher seq of the
  same device is newer whatever its ``ts``; the same seq is a duplicate; a lower
  one is a late or replayed reading - unless it lies more than
  ``SEQ_RESTART_GAP`` below, or carries a later ``ts`` than the newest reading,
  which means the agent started counting again. Without seq, a later ``ts`` is
  newer.
- **Age** is judged on the device's own clock. Each device learns its *offset*:
  arrival time minus ``ts`` of its live readings (the network delay plus the
  difference between the two clocks). A reading whose arrival minus ``ts``
  exceeds that offset by more than ``max_reading_age_s`` was buffered (an agent
  outbox flushed after an outage, the broker's queue after a collector restart)
  and fires nothing. A skewed clock on either side shifts every reading of the
  device equally, so the offset absorbs it and live readings stay live.
- **Learning** the offset must not be fooled by a flush, whose readings look ever
  fresher as it catches up. So an offset is adopted only from a *run* of readings
  whose arrival minus ``ts`` stays within ``TOLERANCE_MS`` while their arrivals
  span ``settle_ms``: timestamps advancing in step with the collector's clock
  are a live stream; a flush advances hours of ``ts`` in seconds and never
  settles. The offset adopted is the run's smallest (the freshest).
  Until a device has one, the median of the other devices' offsets stands in
  (a collector clock that is off shows in all of them), and with none, zero.
- **A future timestamp** (ahead of what the device's offset allows) is suspicious,
  not the new "now": the reading counts as live (it did arrive now), but neither
  its ``ts`` nor its "last heard" time may go past the present, so the readings
  after it - stamped correctly - are still newer and the device can still go
  offline.

Times for offline detection and messages ("last heard") are translated into the
collector's clock (``ts`` plus the offset), so a skew of either clock does not
make every device look silent.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from fleet.daemon.alerts.rules import DeviceView
from fleet.daemon.wire import DecodedReading

_LOG = logging.getLogger(__name__)

# Jitter of arrival minus ts within a live stream (broker, agent batching, scheduling).
TOLERANCE_MS = 5_000
# A seq this far below the newest is a new count (agent outbox lost), not a late reading:
# MQTT redelivers at most an in-flight window, and the agent resends its outbox in order.
SEQ_RESTART_GAP = 1_000


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the clock says of one reading that is newer than what was known."""

    live: bool  # recent enough to fire or resolve
    future: bool  # stamped ahead of what the device's clock allows
    age_ms: int  # on the device's own clock; negative when from the future


class Clocks:
    """Ordering and age of readings, per device; the state lives in each ``DeviceView``."""

    def __init__(self, *, max_age_ms: int, settle_ms: int) -> None:
        self._max_age_ms = max_age_ms
        self._settle_ms = settle_ms
        self.fleet_offset_ms = 0
        self._future: set[str] = set()
        # Whether a device's offset changed since the median was last taken: the median of
        # a thousand devices is not taken again every second when none of them moved.
        self.stale = True

    def refresh_fleet(self, views: Iterable[DeviceView]) -> None:
        """The stand-in offset of devices that have none yet: the median of the others'."""
        offsets = [v.offset_ms for v in views if v.offset_ms is not None]
        self.fleet_offset_ms = round(statistics.median(offsets)) if offsets else 0
        self.stale = False

    @staticmethod
    def is_newer(view: DeviceView, reading: DecodedReading) -> bool:
        if reading.seq is not None and view.seq is not None:
            if reading.seq > view.seq:
                return True
            if reading.seq == view.seq:
                return False
            return view.seq - reading.seq > SEQ_RESTART_GAP or reading.ts_ms > view.newest_ts_ms
        return reading.ts_ms > view.newest_ts_ms

    def arrive(self, view: DeviceView, reading: DecodedReading, now_ms: int) -> Arrival:
        """Account for a reading that ``is_newer``: learn, and move the view's marks."""
        delay = now_ms - reading.ts_ms
        self._learn(view, reading.device, delay, now_ms)
        offset = self.fleet_offset_ms if view.offset_ms is None else view.offset_ms
        age = delay - offset
        future = age < -TOLERANCE_MS
        self._note_future(reading.device, future, age)
        view.seq = reading.seq
        # A future stamp is capped at the device's "now": it must not outrank later, correct ones.
        view.newest_ts_ms = now_ms - offset if future else reading.ts_ms
        heard = min(reading.ts_ms + offset, now_ms)
        view.heard_ms = heard if view.heard_ms is None else max(view.heard_ms, heard)
        return Arrival(live=age <= self._max_age_ms, future=future, age_ms=age)

    def _learn(self, view: DeviceView, device: str, delay: int, now_ms: int) -> None:
        run_min, run_start = view.run_min_ms, view.run_start_ms
        if run_min is None or run_start is None or abs(delay - run_min) > TOLERANCE_MS:
            view.run_min_ms, view.run_start_ms = delay, now_ms  # a new run starts here
            return
        view.run_min_ms = run_min = min(run_min, delay)
        if now_ms - run_start >= self._settle_ms and view.offset_ms != run_min:
            before = 0 if view.offset_ms is None else view.offset_ms
            # Worth a line when a clock is off, or was: not for every device's network delay.
            if max(abs(run_min), abs(before)) > TOLERANCE_MS and abs(before - run_min) > 1000:
                _LOG.info(
                    "%s: clock offset now %+.1f s (arrival minus ts; was %s)",
                    device,
                    run_min / 1000,
                    "unknown" if view.offset_ms is None else f"{view.offset_ms / 1000:+.1f} s",
                )
            view.offset_ms = run_min
            self.stale = True

    def _note_future(self, device: str, future: bool, age_ms: int) -> None:
        if future and device not in self._future:
            self._future.add(device)
            _LOG.warning(
                "%s: reading stamped %.0f s ahead of its clock; kept, but not taken as 'now'",
                device,
                -age_ms / 1000,
            )
        elif not future and device in self._future:
            self._future.discard(device)
            _LOG.info("%s: timestamps agree with its clock again", device)
