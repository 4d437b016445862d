"""Per-device sequence accounting: how many readings went missing or came twice.

Agents number each device's readings 1, 2, 3... A jump forward counts the
skipped numbers as missing; a late arrival of a missing number takes it back
(MQTT does not promise order across reconnects); a number seen before is a
duplicate (a QoS 1 redelivery). A number more than WINDOW away from the
highest seen - below it, or above it - means the agent restarted (or
renumbered) its count, so the device starts afresh: a jump of 2**62 is not
2**62 lost readings, and must not cost memory either.

Which of the last WINDOW numbers were seen is one bit each in an int, so a
device costs a few hundred bytes however long the collector runs, whatever
numbers it is sent. The state of each device (not its counters, which count
since start) survives a collector restart as a `SeqRow` in the spool's file,
so a gap across the restart is counted and a redelivery after it is
recognised as a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleet.daemon.spool import SeqRow
from fleet.daemon.wire.fast import builder

# A row per dirty device per batch, ~one per message in a drain: without the dataclass
# __init__ (fast.builder says why).
_ROW = builder(SeqRow)

WINDOW = 4096  # how far back late arrivals and duplicates are recognised
_MASK = (1 << WINDOW) - 1
SEEN_BYTES = WINDOW // 8


@dataclass(slots=True)
class DeviceSeq:
    site: str
    kind: str
    highest: int = -1
    # Gaps are counted above this number (the first of the count, in this process):
    # a late arrival above it fills one, one below it was never counted.
    lowest: int = -1
    missing: int = 0
    duplicates: int = 0
    received: int = 0
    restarts: int = 0
    seen: int = 0  # bit i: seq `highest - i` has been seen
    changed: bool = True  # news for the stats reporter


class SeqTracker:
    def __init__(self, restored: Iterable[SeqRow] = ()) -> None:
        self.devices: dict[str, DeviceSeq] = {}
        self.missing = 0
        self.duplicates = 0
        self.restarts = 0
        self._dirty: set[str] = set()  # devices whose state the spool has not yet got
        for s in restored:
            self.devices[s.device] = DeviceSeq(
                s.site,
                s.kind,
                highest=s.highest,
                # Gaps counted by an earlier process are not this one's to take back:
                # the counters start at zero, and must not go below it.
                lowest=s.highest,
                # Masked: a file edited by hand must not bring back an unbounded int.
                seen=int.from_bytes(s.seen[:SEEN_BYTES], "little") & _MASK,
                changed=False,
            )

    def observe(self, site: str, kind: str, device: str, seq: int | None) -> None:
        state = self.devices.get(device)
        if state is None:
            state = self.devices[device] = DeviceSeq(site, kind)
        state.received += 1
        state.changed = True
        if seq is None:
            return
        self._dirty.add(device)
        if state.highest < 0 or not state.highest - WINDOW <= seq <= state.highest + WINDOW:
            # First number, or one too far from the last to be a gap or a late
            # arrival: a new count. Nothing is allocated for the distance.
            if state.highest >= 0:
                state.restarts += 1
                self.restarts += 1
            state.highest = state.lowest = seq
            state.seen = 1
            return
        if seq > state.highest:
            step = seq - state.highest  # 1..WINDOW: the shift below is bounded
            state.missing += step - 1
            self.missing += step - 1
            state.seen = ((state.seen << step) | 1) & _MASK
            state.highest = seq
            return
        offset = state.highest - seq
        if offset >= WINDOW:
            # Just outside the bitmap: neither a duplicate we could tell nor a gap
            # we still remember counting; an old reading.
            return
        bit = 1 << offset
        if state.seen & bit:
            state.duplicates += 1
            self.duplicates += 1
            return
        state.seen |= bit
        if seq > state.lowest:
            # A late arrival fills a gap counted earlier.
            state.missing -= 1
            self.missing -= 1
        # else older than the count's first number: not a gap we counted.

    def take_changed(self) -> list[tuple[str, DeviceSeq]]:
        """Devices with news since the last call (for the per-device pipeline points)."""
        # list() copies atomically: the ingest thread may add devices meanwhile.
        changed = [(device, s) for device, s in list(self.devices.items()) if s.changed]
        for _, s in changed:
            s.changed = False
        return changed

    def take_dirty(self) -> list[SeqRow]:
        """The state of devices whose numbers moved since the last call, to persist.

        Called by the ingest thread only, which also owns `observe`.
        """
        dirty: list[SeqRow] = []
        for device in self._dirty:
            s = self.devices[device]
            seen = s.seen.to_bytes((s.seen.bit_length() + 7) // 8, "little")
            dirty.append(_ROW(device, s.site, s.kind, s.highest, seen))
        self._dirty.clear()
        return dirty
