"""Liveness: the long-running loops say that they turn; a notifier tells systemd while they do.

A watched loop calls `beat()` once per turn - including the turns where it only
woke up from its queue or timer with nothing to do, so an idle but healthy part
still beats. `beat()` finds the loop's `Heart` through a context variable that
`watched_thread` / `watched_task` set when the part starts: the loops need no
reference to any of this, and a loop that runs unwatched (most tests) beats
nothing.

`ServiceNotifier` is the supervised thread that speaks to systemd (sdnotify.py):
`READY=1` once the link is up, then every tick one datagram with a `STATUS=` line
a person reads in `systemctl status`, plus `WATCHDOG=1` only while every watched
part beat within its allowance *and* MQTT is connected. When either stops, the
pings stop and systemd restarts the service after `WatchdogSec=`; the journal
says why, with the stack of a part that stopped turning.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fleet.daemon.sdnotify import SdNotify, clean_status
from fleet.daemon.supervisor import supervise

_LOG = logging.getLogger(__name__)

# How long a loop may take over one turn beyond what it waits for on purpose: a batch of
# work, an fsync on a slow SD card, a garbage collection. A wedge is acted on after this
# plus WatchdogSec=.
STALL_S = 30.0
STATUS_EVERY_S = 5.0  # how fresh the STATUS= line in `systemctl status` is
READY_POLL_S = 0.1  # before READY=1: how soon a new connection is announced

Clock = Callable[[], float]


class Heart:
    """When a part last turned (monotonic seconds) and on which thread it runs."""

    __slots__ = ("_clock", "last", "name", "thread")

    def __init__(self, name: str, clock: Clock = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self.last = clock()
        self.thread: int | None = None

    def beat(self) -> None:
        self.last = self._clock()


_HEART: ContextVar[Heart | None] = ContextVar("fleet_liveness_heart", default=None)


def beat() -> None:
    """One turn of the calling loop; nothing when the loop is not watched."""
    heart = _HEART.get()
    if heart is not None:
        heart.beat()


def bind(heart: Heart) -> None:
    """Make `heart` the one that `beat()` beats in this thread, or this asyncio task."""
    heart.thread = threading.get_ident()
    _HEART.set(heart)
    heart.beat()


def watched_thread(heart: Heart, work: Callable[[threading.Event], None]) -> Callable[..., None]:
    """`work(stop)` (a supervised thread's body) beating `heart`; bound again on each restart."""

    def run(stop: threading.Event) -> None:
        bind(heart)
        work(stop)

    return run


def watched_task(
    heart: Heart, run: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """`run()` (an asyncio task's coroutine) beating `heart`: a task has its own context."""

    async def watched() -> None:
        bind(heart)
        await run()

    return watched


class Watch:
    """The watched parts and how long each may stay silent."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.hearts: dict[str, Heart] = {}
        self.allowances: dict[str, float] = {}  # seconds; tests shorten them

    def add(self, name: str, allowance_s: float) -> Heart:
        heart = self.hearts[name] = Heart(name, self._clock)
        self.allowances[name] = allowance_s
        return heart

    def stale(self) -> list[tuple[str, float]]:
        """(part, seconds since it last turned) of every part past its allowance."""
        now = self._clock()
        return [
            (name, now - heart.last)
            for name, heart in self.hearts.items()
            if now - heart.last > self.allowances[name]
        ]


@dataclass(frozen=True, slots=True)
class Health:
    stale: list[tuple[str, float]]  # parts silent past their allowance, with for how long
    connected: bool
    down_for_s: float | None  # how long MQTT has been disconnected (None while connected)

    @property
    def alive(self) -> bool:
        return self.connected and not self.stale

    def problems(self) -> list[str]:
        """What keeps the watchdog from being pinged, in words."""
        said = [f"{name} stalled for {silent:.0f} s" for name, silent in self.stale]
        if not self.connected:
            said.append(f"MQTT disconnected for {self.down_for_s or 0:.0f} s")
        return said


class Rate:
    """Events per second between two looks at a growing counter."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, int] | None = None

    def per_s(self, count: int) -> float:
        now = self._clock()
        last, self._last = self._last, (now, count)
        if last is None or now <= last[0]:
            return 0.0
        return max(0, count - last[1]) / (now - last[0])


class ServiceNotifier:
    """READY, STATUS and the watchdog rule, one datagram per tick (`tick()` drives it)."""

    def __init__(
        self,
        sd: SdNotify,
        watch: Watch,
        *,
        connected: Callable[[], bool],
        status: Callable[[Health], str],
        starting: Callable[[], str],
        stopping: str = "stopping",
        clock: Clock = time.monotonic,
    ) -> None:
        self.sd = sd
        self.watch = watch
        self._connected = connected
        self._status = status
        self._starting = starting
        self._stopping = stopping
        self._clock = clock
        ping = sd.ping_every_s if sd.ping_every_s is not None else math.inf
        self.period_s = min(ping, STATUS_EVERY_S)
        self.ready = False
        self.ticks = 0
        self.pings = 0
        self._down_since: float | None = None
        self._said: str | None = None  # the last STATUS before READY (sent on change only)
        self._troubled: frozenset[str] = frozenset()  # what was logged as stale
        self._status_failed = False
        self._lock = threading.Lock()  # ticks of the thread and of a test, in order

    def health(self) -> Health:
        connected = self._connected()
        now = self._clock()
        if connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        down = None if self._down_since is None else now - self._down_since
        return Health(self.watch.stale(), connected, down)

    def tick(self) -> str | None:
        """One look: what was sent (the datagram's text), None if nothing was."""
        with self._lock:
            self.ticks += 1
            health = self.health()
            if not self.ready and not health.connected:
                text = f"STATUS={self._text(self._starting)}"
                if text == self._said:
                    return None
                self._said = text
                return text if self.sd.send(text) else None
            lines = [] if self.ready else ["READY=1"]
            lines.append(f"STATUS={self._text(lambda: self._status(health))}")
            ping = health.alive and self.sd.ping_every_s is not None
            if ping:
                lines.append("WATCHDOG=1")
            self._log_changes(health)
            if not self.sd.send(*lines):
                return None  # counted and logged by sd; READY goes again with the next tick
            self.ready = True
            self.pings += ping
            return "\n".join(lines)

    def _text(self, make: Callable[[], str]) -> str:
        try:
            text = make()
        except Exception:  # noqa: BLE001 - the status is words; the watchdog rule must go on
            if not self._status_failed:
                _LOG.exception("could not put the service status into words")
            self._status_failed = True
            return "status unavailable (see the journal)"
        self._status_failed = False
        return clean_status(text)

    def _log_changes(self, health: Health) -> None:
        troubled = frozenset(
            [name for name, _ in health.stale] + ([] if health.connected else ["MQTT"])
        )
        for name, silent in health.stale:
            if name not in self._troubled:
                _LOG.error(
                    "%s has not turned for %.0f s (allowed: %.0f s): systemd's watchdog is no "
                    "longer pinged and restarts the service unless it recovers. Where it is:\n%s",
                    name,
                    silent,
                    self.watch.allowances[name],
                    self._where(self.watch.hearts[name]),
                )
        if "MQTT" in troubled and "MQTT" not in self._troubled:
            _LOG.warning("MQTT is disconnected: systemd's watchdog is not pinged until it is back")
        if self._troubled and not troubled:
            _LOG.warning("every part turns and MQTT is connected: watchdog pings resume")
        self._troubled = troubled

    @staticmethod
    def _where(heart: Heart) -> str:
        frame = sys._current_frames().get(heart.thread) if heart.thread is not None else None
        if frame is None:
            return "  (its thread is gone)"
        return "".join(traceback.format_stack(frame)[-12:]).rstrip()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(self.period_s if self.ready else READY_POLL_S)

    def start(self, name: str = "sd-notify") -> Callable[[], None]:
        """Tick in a supervised thread; the undo stops it and says STOPPING=1."""
        stop_thread = supervise(name, self.run)

        def undo() -> None:
            stop_thread(5.0)
            with self._lock:  # after the last tick: no ping follows STOPPING=1
                self.sd.stopping(self._stopping)
            self.sd.close()

        return undo


async def pulse(heart: Heart, every_s: float = 1.0) -> None:
    """Beat `heart` from an asyncio task: it beats only while the event loop turns."""
    import asyncio  # here: only the agent runs an event loop; the collector never loads it

    bind(heart)
    while True:
        heart.beat()
        await asyncio.sleep(every_s)
