"""BLE liveness watchdog: a BlueZ scanner can stop delivering advertisements without an error.

When the agent runs BLE drivers and not a single advertisement arrived for
`period_s`, the scanner is presumed stuck: the BLE drivers are restarted (which
restarts their scanning) and it is logged. At most once per period, so a fleet
that is really away (all handhelds out on patrol) costs one restart per period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

_LOG = logging.getLogger(__name__)


class BleWatchdog:
    def __init__(
        self,
        period_s: float,
        restart: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._period_s = period_s
        self._restart = restart  # restarts the BLE drivers; returns how many
        self._clock = clock
        self._last_advert = clock()
        self._last_restart = self._last_advert
        self.restarts = 0

    def advert_seen(self) -> None:
        self._last_advert = self._clock()

    async def run(self) -> None:
        tick = min(1.0, self._period_s / 4)
        while True:
            await asyncio.sleep(tick)
            self.check()

    def check(self) -> bool:
        """Restart the BLE drivers if adverts stopped for a period; True if it did."""
        now = self._clock()
        silent = now - self._last_advert
        if silent < self._period_s or now - self._last_restart < self._period_s:
            return False
        self._last_restart = now
        self.restarts += 1
        count = self._restart()
        _LOG.warning(
            "no BLE advertisement for %.0f s; restarted %d BLE driver(s) (watchdog restart %d)",
            silent,
            count,
            self.restarts,
        )
        return True
