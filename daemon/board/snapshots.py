"""The device list as served: judged once and shared, not once per screen per poll.

Judging and encoding 1,000 devices costs ~80 ms of the interpreter lock the ingest thread
needs too (measured: tests/bench/bench_board.py), and every board screen polls. So the
encoded answer (and its gzip) is kept per site for at most `max_age_s`; concurrent
requests wait for one computation instead of each doing it; `refresh()` (the board's
loop, every second) recomputes the sites a screen asked for within `watch_s`, so a
request almost never waits. A change on the sheet (`changed()`) drops every kept answer:
the officer who signs a device out sees it at once.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Render = Callable[[str | None], bytes]  # site (None: all) -> the JSON answer


@dataclass(frozen=True, slots=True)
class Snapshot:
    body: bytes
    gzipped: bytes
    made: float  # monotonic
    generation: int


class Snapshots:
    def __init__(
        self,
        render: Render,
        *,
        max_age_s: float = 2.0,
        watch_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self.max_age_s = max_age_s
        self._watch_s = watch_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the dicts and the generation
        self._compute = threading.Lock()  # one computation at a time, shared by the waiters
        self._kept: dict[str | None, Snapshot] = {}
        self._asked: dict[str | None, float] = {}
        self._generation = 0
        self.computed = 0  # how many times the answer was judged and encoded

    def get(self, site: str | None) -> Snapshot:
        with self._lock:
            self._asked[site] = self._clock()
        fresh = self._fresh(site)
        if fresh is not None:
            return fresh
        with self._compute:
            fresh = self._fresh(site)  # another request may have made it meanwhile
            return fresh if fresh is not None else self._make(site)

    def changed(self) -> None:
        with self._lock:
            self._generation += 1
            self._kept.clear()

    def refresh(self) -> None:
        """Recompute what a screen watches and is older than half its allowed age."""
        now = self._clock()
        with self._lock:
            watched = [s for s, at in self._asked.items() if now - at <= self._watch_s]
            for site in [s for s, at in self._asked.items() if now - at > self._watch_s]:
                del self._asked[site]
                self._kept.pop(site, None)
        for site in watched:
            with self._compute:
                kept = self._kept.get(site)
                if kept is None or now - kept.made >= self.max_age_s / 2:
                    self._make(site)

    def _fresh(self, site: str | None) -> Snapshot | None:
        with self._lock:
            kept = self._kept.get(site)
            if kept is None or kept.generation != self._generation:
                return None
            return kept if self._clock() - kept.made < self.max_age_s else None

    def _make(self, site: str | None) -> Snapshot:
        with self._lock:
            generation = self._generation
        body = self._render(site)
        # Level 1: a tenth of the size for a few ms; a handheld on the station's Wi-Fi polls.
        snapshot = Snapshot(body, gzip.compress(body, 1), self._clock(), generation)
        with self._lock:
            self.computed += 1
            if generation == self._generation:  # a change meanwhile: do not keep the old answer
                self._kept[site] = snapshot
        return snapshot
