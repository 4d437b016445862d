"""When each device may next be called offline: a heap of deadlines, so the engine's tick looks
only at the devices whose offline window may have run out, instead of every device every second.

A deadline is a lower bound: the device's last heard time plus its window. What pushes the
real start of a silence later (the engine's first tick, the end of a blind spell, a holder's
return: ``offline``) only ever makes it later, so nothing due is missed; a device popped before
its real deadline is judged exactly (``OfflineJudge.heard_from``) and pushed back to it. Each
device has at most one live entry (a later reading moves no entry: the pop finds the new
deadline), so the heap holds at most one entry per device plus the few a kind change made
stale. Devices of a site whose agent or bridge link is down are parked by site and judged
again once it is back (with the full window it gives them).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from fleet.daemon.alerts.offline import OfflineJudge
from fleet.daemon.alerts.rules import DeviceView, silent_too_long

_NOW = float("-inf")  # a deadline that is due at once


class OfflineDeadlines:
    """Not thread-safe on its own: the engine calls it under its lock."""

    def __init__(self, judge: OfflineJudge) -> None:
        self._judge = judge
        self._heap: list[tuple[float, str]] = []
        self._queued: dict[str, float] = {}  # device -> the deadline of its live entry
        self._held: dict[str, set[str]] = {}  # site -> its devices parked while it is down

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, device: str, view: DeviceView, after_s: float | None) -> None:
        """Note that `device` was heard (or is known): judge it once its window may be over."""
        if after_s is not None:
            self._push(device, view.last_heard_ms + after_s * 1000)

    def _push(self, device: str, due: float) -> None:
        queued = self._queued.get(device)
        if queued is not None and queued <= due:
            return  # an earlier entry is there: popping it finds this deadline
        self._queued[device] = due
        heapq.heappush(self._heap, (due, device))

    def silent(
        self,
        views: Mapping[str, DeviceView],
        offline_after_s: Callable[[str, DeviceView], float | None],
        now_ms: int,
    ) -> list[str]:
        """The devices silent past their window now (`OfflineJudge`'s rules), in heap order.

        A device returned here leaves the heap: it is scheduled again when it is next heard."""
        judge = self._judge
        if judge.blind_since_ms is not None:
            return []  # blind: silence now is no evidence of anything; the heap waits
        down = judge.down_sites()
        for site in [site for site in self._held if site not in down]:
            for device in self._held.pop(site):
                self._push(device, _NOW)
        heap, queued = self._heap, self._queued
        due: list[str] = []
        while heap and heap[0][0] <= now_ms:
            at, device = heapq.heappop(heap)
            if queued.get(device) == at:  # else stale: a kind change pushed an earlier one
                del queued[device]
                due.append(device)
        found, later = [], []
        for device in due:
            view = views.get(device)
            after_s = None if view is None else offline_after_s(device, view)
            if view is None or after_s is None:
                continue  # not judged (offline disabled for its kind): a reading reschedules
            heard = judge.heard_from(view, now_ms)
            if not silent_too_long(heard, now_ms, after_s):
                later.append((device, heard + after_s * 1000))
            elif view.source == "telemetry" and view.site in down:
                self._held.setdefault(view.site, set()).add(device)  # inhibited: see offline
            else:
                found.append(device)
        for device, at in later:  # after the loop: a deadline equal to now waits a tick
            self._push(device, at)
        return found
