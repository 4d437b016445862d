"""A DriverSink that records everything, and an async poll for driver tests.

Driver tests run the driver in the test's own event loop, so they cannot use
the blocking `wait_until`; `until` is its asyncio twin (poll, never sleep a
fixed time to wait for something).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fleet.drivers.readings import Reading

T = TypeVar("T")


@dataclass
class RecordingSink:
    readings: list[Reading] = field(default_factory=list)
    availability_log: list[tuple[str, bool, str]] = field(default_factory=list)
    adverts: int = 0

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)

    def availability(self, device: str, online: bool, detail: str = "") -> None:
        self.availability_log.append((device, online, detail))

    def advert_seen(self) -> None:
        self.adverts += 1

    def online(self, device: str) -> bool | None:
        """The last availability reported for `device` (None: never reported)."""
        states = [online for dev, online, _ in self.availability_log if dev == device]
        return states[-1] if states else None


async def until(predicate: Callable[[], T], within: float = 5.0, message: str = "") -> T:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{message or 'condition not met'} (waited {within:g} s; last: {value!r})"
            )
        await asyncio.sleep(0.01)
