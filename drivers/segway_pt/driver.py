"""`segway_pt_battery` driver: the two lithium packs of a Segway PT, read over I²C.

Every `poll_interval_s` both packs are read in full (state of charge, charge current,
temperatures, cell groups, identity) on the driver's own worker thread: i2c-dev calls block,
and the event loop also carries every other driver and the MQTT link. One reading is
published per PT (see `pack.vehicle_reading`: never the optimistic pack's values).

Availability: online when both packs were read; otherwise offline with the reason
("pack B does not answer on /dev/i2c-2 at 0x31 - is 12 V on BATTERY ENABLE? (...)") and
NOTHING is published, not even the answering pack's values: a silent pack may be the
drained one (a drained pack's BMS stops answering), so the other pack's charge would be an
optimistic verdict. The answering pack's values stay in the DEBUG log. A bus that failed
is reopened at the next poll; a missing or unplugged adapter is an everyday condition,
handled here rather than by raising (which would use up the agent's restart budget).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from fleet.drivers.base import DriverSink
from fleet.drivers.segway_pt.config import SegwayPtBatteryConfig, bus_path
from fleet.drivers.segway_pt.link import (
    I2cBus,
    LinkStats,
    OpenBus,
    PackLink,
    PackUnreadable,
    open_smbus,
)
from fleet.drivers.segway_pt.pack import PackValues, vehicle_reading

_LOG = logging.getLogger(__name__)

# Refused replies are logged at most this often, so a noisy harness cannot flood the log.
_STATS_LOG_INTERVAL_S = 60.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PollOutcome:
    packs: list[PackValues]
    problems: list[str]


class SegwayPtBattery:
    """Reads one PT's two packs; see the module docstring."""

    kind: ClassVar[str] = "segway_pt_battery"

    def __init__(
        self,
        config: SegwayPtBatteryConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        open_bus: OpenBus = open_smbus,
    ) -> None:
        self._config = config
        self._clock = clock
        self._open_bus = open_bus
        self.stats = LinkStats()
        self._links = [
            PackLink(
                name,
                bus,
                address=config.pack_address,
                mux=None if channel is None else (config.mux_address or 0, channel),
                retries=config.checksum_retries,
                stats=self.stats,
            )
            for name, bus, channel in config.wiring()
        ]
        self._buses: dict[str, I2cBus] = {}  # by device path; only the worker thread uses it
        self._online: bool | None = None
        self._detail = ""
        self._serials: dict[str, str | None] = {}
        self._refused_logged = 0
        self._refused_logged_at = 0.0
        self.polls = 0  # completed reads of both packs, for tests
        self.last_packs: dict[str, PackValues] = {}  # the last good values of each pack

    async def run(self, sink: DriverSink) -> None:
        loop = asyncio.get_running_loop()
        # One thread per driver: reads and the final close never overlap on a bus.
        worker = ThreadPoolExecutor(1, thread_name_prefix=f"pt-{self._config.device}")
        try:
            while True:
                started = loop.time()
                outcome = await loop.run_in_executor(worker, self._poll)
                self.polls += 1
                self._report(sink, outcome)
                self._log_refused()
                delay = started + self._config.poll_interval_s - loop.time()
                await asyncio.sleep(max(0.0, delay))
        finally:
            worker.submit(self._close_all)
            worker.shutdown(wait=False)

    def _poll(self) -> PollOutcome:
        """Both packs, blocking (runs on the worker thread)."""
        packs: list[PackValues] = []
        problems: list[str] = []
        failed: set[str] = set()
        for link in self._links:
            path = bus_path(link.bus)
            try:
                bus = self._bus(link)
                packs.append(link.read(bus))
            except PackUnreadable as exc:
                problems.append(str(exc))
                if isinstance(exc.__cause__, OSError):
                    failed.add(path)
        for path in failed:  # reopened at the next poll: the adapter may have been replugged
            self._close(path)
        return PollOutcome(packs, problems)

    def _bus(self, link: PackLink) -> I2cBus:
        path = bus_path(link.bus)
        bus = self._buses.get(path)
        if bus is None:
            try:
                bus = self._open_bus(link.bus)
            except OSError as exc:
                raise PackUnreadable(f"cannot open {path} for pack {link.name}: {exc}") from exc
            self._buses[path] = bus
        return bus

    def _close(self, path: str) -> None:
        bus = self._buses.pop(path, None)
        if bus is not None:
            try:
                bus.close()
            except OSError as exc:
                _LOG.debug("closing %s: %s", path, exc)

    def _close_all(self) -> None:
        for path in list(self._buses):
            self._close(path)

    def _report(self, sink: DriverSink, outcome: PollOutcome) -> None:
        device = self._config.device
        for pack in outcome.packs:
            self.last_packs[pack.name] = pack
            _LOG.debug("%s: %s", device, pack.describe())
            self._note_identity(pack)
        if outcome.problems:
            self._set_online(sink, False, "; ".join(outcome.problems))
            return
        self._set_online(sink, True, "both packs answering")
        sink.reading(vehicle_reading(device, self._clock(), outcome.packs))

    def _note_identity(self, pack: PackValues) -> None:
        """A pack seen for the first time, or swapped, is worth a line at INFO."""
        known = self._serials.get(pack.name, "")
        if pack.serial == known:
            return
        self._serials[pack.name] = pack.serial
        if known == "":
            _LOG.info(
                "%s: pack %s is %s (revision %s)",
                self._config.device,
                pack.name,
                pack.serial or "of unknown serial",
                pack.revision or "?",
            )
        else:
            _LOG.warning(
                "%s: pack %s changed: %s -> %s (revision %s)",
                self._config.device,
                pack.name,
                known or "?",
                pack.serial or "?",
                pack.revision or "?",
            )

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online and (online or detail == self._detail):
            return
        changed_state = online != self._online
        self._online, self._detail = online, detail
        if online:
            _LOG.info("%s: both packs answering", self._config.device)
        else:
            # The agent logs the state change; a new reason while offline is only here.
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        if changed_state:
            sink.availability(self._config.device, online, detail)

    def _log_refused(self) -> None:
        stats = self.stats
        now = time.monotonic()
        if stats.refused == self._refused_logged:
            return
        if now - self._refused_logged_at < _STATS_LOG_INTERVAL_S:
            return
        self._refused_logged, self._refused_logged_at = stats.refused, now
        _LOG.warning(
            "%s: %d replies refused so far (%d bad checksums, %d short, %d state-of-charge "
            "reads that disagreed, %d stray list entries) of %d; never published",
            self._config.device,
            stats.refused,
            stats.bad_checksums,
            stats.short_replies,
            stats.disagreements,
            stats.stray_entries,
            stats.triplets,
        )
