"""A driver as a supervised asyncio task: restarted with backoff, given up after a budget.

A driver's `run(sink)` returns only when cancelled; raising (or returning)
means it is broken. The supervisor logs it, reports its devices offline,
waits an exponentially growing pause and builds a fresh driver. More than
`budget` failures within `window_s` and it gives up on that driver alone:
its devices stay offline, the agent and every other driver keep running.

`restart()` (the BLE watchdog) cancels the running driver and starts a new
one at once, without counting a failure.

The agent's own tasks (the outbox writer, the forwarder) are supervised the
same way by `SupervisedTask`, except that they are never given up - without
them the agent is useless. Past the budget they keep restarting at the
longest pause and the agent reports itself offline until one has run a whole
window without failing: it never dies silently while the agent says `online`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fleet.daemon.agent.registry import DriverSpec
from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    budget: int
    window_s: float
    backoff: Backoff

    def record(self, recent: deque[float]) -> int:
        """Note a failure now in `recent`; returns the failures within the window."""
        now = time.monotonic()
        recent.append(now)
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        return len(recent)

    def delay(self, failures: int) -> float:
        """The pause before the next start after `failures` failures within the window."""
        return self.backoff.delay(failures)


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

    @property
    def running(self) -> bool:
        """A driver instance runs now: not in its pause before a restart, not given up."""
        return self._run is not None and not self._run.done()

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
            self._policy.record(recent)
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
            delay = self._policy.delay(len(recent))
            _LOG.warning("driver %s restarts in %.1f s", self.spec.name, delay)
            await asyncio.sleep(delay)


class SupervisedTask:
    """One of the agent's own long-running tasks, restarted whenever it raises or returns.

    `on_problem(sentence)` is called when it fails more than `budget` times within
    the window (the agent then reports itself offline), `on_problem(None)` once
    it has run a whole window again without failing.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], Coroutine[Any, Any, None]],
        policy: RestartPolicy,
        *,
        on_problem: Callable[[str | None], None],
    ) -> None:
        self.name = name
        self._run = run
        self._policy = policy
        self._on_problem = on_problem
        self.starts = 0
        self.failures = 0
        self.troubled = False  # failing past the budget: reported as a problem
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._loop(), name=f"supervisor of {self.name}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        recent: deque[float] = deque()
        while True:
            self.starts += 1
            run = asyncio.create_task(self._run(), name=self.name)
            try:
                problem = await self._watch(run)
            except asyncio.CancelledError:
                run.cancel()  # the agent is stopping
                await asyncio.gather(run, return_exceptions=True)
                raise
            self.failures += 1
            failures = self._policy.record(recent)
            if failures > self._policy.budget and not self.troubled:
                self.troubled = True
                _LOG.critical(
                    "%s failed %d times in %.0f s (%s); it keeps being restarted, and the "
                    "agent reports itself offline until it runs %.0f s without failing",
                    self.name,
                    failures,
                    self._policy.window_s,
                    problem,
                    self._policy.window_s,
                )
                self._on_problem(f"{self.name} keeps failing: {problem}")
            delay = self._policy.delay(failures)
            _LOG.warning("%s restarts in %.1f s", self.name, delay)
            await asyncio.sleep(delay)

    async def _watch(self, run: asyncio.Task[None]) -> str:
        """Wait until `run` ends (it failed: returns why), clearing the trouble once it ran a window."""
        if self.troubled:
            await asyncio.wait({run}, timeout=self._policy.window_s)
            if not run.done():
                self.troubled = False
                _LOG.info("%s ran %.0f s without failing", self.name, self._policy.window_s)
                self._on_problem(None)
        try:
            await run
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            problem = "cancelled"
        except Exception as exc:  # noqa: BLE001 - any failure is restarted, not fatal
            problem = f"{type(exc).__name__}: {exc}"
            _LOG.error("%s failed: %s", self.name, problem, exc_info=exc)
        else:
            problem = "returned (it runs until cancelled)"
        return problem
