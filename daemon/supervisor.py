"""Supervised worker threads: restarted with backoff, stopped by their undo.

A worker is a function `work(stop)` that returns when `stop` is set. If it
raises, it is logged and restarted after an exponentially growing pause; more
than `budget` failures within `window_s` means something is badly wrong, and
the supervisor gives up on it and reports it through `on_give_up` (the
collector then stops the process so systemd restarts it cleanly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from fleet.drivers.backoff import Backoff

_LOG = logging.getLogger(__name__)

Work = Callable[[threading.Event], None]


def supervise(
    name: str,
    work: Work,
    *,
    budget: int = 5,
    window_s: float = 60.0,
    backoff_initial_s: float = 0.5,
    backoff_max_s: float = 30.0,
    on_give_up: Callable[[str], None] | None = None,
) -> Callable[[float], bool]:
    """Start `work` in a thread; returns its undo: stop(timeout) -> joined in time."""
    stop = threading.Event()
    backoff = Backoff(backoff_initial_s, backoff_max_s)

    def loop() -> None:
        failures: deque[float] = deque()
        while not stop.is_set():
            try:
                work(stop)
            except Exception:  # noqa: BLE001 - any crash of a worker is restarted, not fatal
                now = time.monotonic()
                failures.append(now)
                while failures and now - failures[0] > window_s:
                    failures.popleft()
                if len(failures) > budget:
                    _LOG.critical(
                        "%s failed %d times in %.0f s; giving up", name, len(failures), window_s
                    )
                    if on_give_up is not None:
                        on_give_up(name)
                    return
                delay = backoff.delay(len(failures))
                _LOG.exception("%s crashed; restarting in %.1f s", name, delay)
                stop.wait(delay)
            else:
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def undo(timeout: float = 30.0) -> bool:
        stop.set()
        thread.join(timeout)
        return not thread.is_alive()

    return undo
