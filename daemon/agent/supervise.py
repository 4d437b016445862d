"""A driver as a supervised asyncio task: restarted with backoff, given up after a budget.

A driver's `run(sink)` returns only when cancelled; raising (or returning)
means it is broken. The supervisor logs it, reports its devices offline,
waits an exponentially growing pause and builds a fresh driver. More than
`budget` failures within `window_s` and it gives up on that driver alone:
its devices stay offline, the agent and every other driver keep running.

`restart()` (the BLE watchdog) cancels the running driver and starts a new
one at once, without counting a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from daemon.agent.registry import DriverSpec
from drivers.base import DriverSink

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    budget: int
    window_s: float
    backoff_initial_s: float
    backoff_max_s: float


class SupervisedDriver:
    def __init__(
        self,
        spec: DriverSpec,
        sink: DriverSink,
        policy: RestartPolicy,
        *,
        on_down: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self._sink = sink
        self._policy = policy
        self._on_down = on_down  # called with a sentence when the driver stops working
        self.starts = 0
        self.failures = 0
        self.gave_up = False
        self._run: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._loop(), name=f"driver {self.spec.name}")
        return self._task

    def restart(self) -> bool:
        """Cancel the running driver so that a fresh one starts now; False if none runs."""
        if self._run is None or self._run.done():
            return False
        self._run.cancel()
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        recent: deque[float] = deque()
        while True:
            self.starts += 1
            try:
                driver = self.spec.factory()
                self._run = asyncio.create_task(driver.run(self._sink), name=self.spec.name)
                await self._run
                problem = "run() returned (a driver runs until cancelled)"
            except asyncio.CancelledError:
                if me.cancelling():
                    raise  # the agent is stopping
                _LOG.info("driver %s restarted on request", self.spec.name)
                continue
            except Exception as exc:  # noqa: BLE001 - any driver failure is restarted, not fatal
                problem = f"{type(exc).__name__}: {exc}"
                _LOG.error("driver %s failed: %s", self.spec.name, problem, exc_info=exc)
            finally:
                self._run = None
            self.failures += 1
            now = time.monotonic()
            recent.append(now)
            while recent and now - recent[0] > self._policy.window_s:
                recent.popleft()
            self._on_down(f"driver failed: {problem}")
            if len(recent) > self._policy.budget:
                self.gave_up = True
                _LOG.critical(
                    "driver %s failed %d times in %.0f s; giving up on it (devices %s stay "
                    "offline until the agent restarts)",
                    self.spec.name,
                    len(recent),
                    self._policy.window_s,
                    ", ".join(self.spec.devices),
                )
                return
            delay = min(
                self._policy.backoff_max_s,
                self._policy.backoff_initial_s * 2 ** (len(recent) - 1),
            )
            _LOG.warning("driver %s restarts in %.1f s", self.spec.name, delay)
            await asyncio.sleep(delay)
