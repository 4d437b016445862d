"""Per-device sequence accounting: how many readings went missing or came twice.

Agents number each device's readings 1, 2, 3... A jump forward counts the
skipped numbers as missing; a late arrival of a missing number takes it back
(MQTT does not promise order across reconnects); a number seen before is a
duplicate (a QoS 1 redelivery). A number far below the highest seen means the
agent restarted its count, so the device starts afresh.

Which of the last WINDOW numbers were seen is one bit each in an int, so a
device costs a few hundred bytes however long the collector runs.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 4096  # how far back late arrivals and duplicates are recognised
_MASK = (1 << WINDOW) - 1


@dataclass(slots=True)
class DeviceSeq:
    site: str
    kind: str
    highest: int = -1
    lowest: int = -1
    missing: int = 0
    duplicates: int = 0
    received: int = 0
    restarts: int = 0
    seen: int = 0  # bit i: seq `highest - i` has been seen
    changed: bool = True


class SeqTracker:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceSeq] = {}
        self.missing = 0
        self.duplicates = 0

    def observe(self, site: str, kind: str, device: str, seq: int | None) -> None:
        state = self.devices.get(device)
        if state is None:
            state = self.devices[device] = DeviceSeq(site, kind)
        state.received += 1
        state.changed = True
        if seq is None:
            return
        if state.highest < 0 or seq < state.highest - WINDOW:
            if state.highest >= 0:
                state.restarts += 1
            state.highest = state.lowest = seq
            state.seen = 1
            return
        if seq > state.highest:
            gap = seq - state.highest - 1
            state.missing += gap
            self.missing += gap
            state.seen = ((state.seen << (seq - state.highest)) | 1) & _MASK
            state.highest = seq
            return
        bit = 1 << (state.highest - seq)
        if state.seen & bit:
            state.duplicates += 1
            self.duplicates += 1
            return
        state.seen |= bit
        if seq > state.lowest:
            # A late arrival fills a gap counted earlier.
            state.missing -= 1
            self.missing -= 1
        else:
            # Older than anything seen since we started: not a gap we counted.
            state.lowest = seq

    def take_changed(self) -> list[tuple[str, DeviceSeq]]:
        """Devices with news since the last call (for the per-device pipeline points)."""
        # list() copies atomically: the ingest thread may add devices meanwhile.
        changed = [(device, s) for device, s in list(self.devices.items()) if s.changed]
        for _, s in changed:
            s.changed = False
        return changed
