"""Retry policy, counters and store interface of notification delivery (``daemon.alerts.notify``)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fleet.daemon.alerts.model import PendingDelivery
from fleet.drivers.backoff import Backoff


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed delivery to one URL is retried.

    `attempts` counts every try, the first included. The n-th retry waits the
    shared `Backoff` pause: `min(max_s, initial_s * factor ** (n - 1))`,
    shortened by up to `jitter` (a fraction) at random so many alerts failing
    together do not retry in lockstep. The defaults make 8 tries over roughly
    half an hour.
    """

    attempts: int = 8
    initial_s: float = 20.0
    max_s: float = 900.0
    factor: float = 2.0
    jitter: float = 0.5
    backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        # Backoff checks the rest: 0 < initial_s <= max_s, factor >= 1, jitter in [0, 1].
        backoff = Backoff(self.initial_s, self.max_s, self.factor, self.jitter)
        object.__setattr__(self, "backoff", backoff)  # frozen: set once, here

    def delay_s(self, retry: int, rng: random.Random) -> float:
        """Pause before retry number `retry` (1 for the first retry)."""
        return self.backoff.delay(retry, rng=rng)


@dataclass
class RouteCounters:
    """Per route. `submitted` and `skipped` count notifications; the others count
    deliveries (one notification to one URL)."""

    submitted: int = 0
    skipped: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0


_COUNTER_NAMES = ("submitted", "skipped", "delivered", "retried", "failed", "dropped")


class NotifyCounters:
    """Thread-safe counters per route, read by the collector's `pipeline` reporter."""

    def __init__(self, routes: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, RouteCounters] = {r: RouteCounters() for r in routes}

    def add(self, route: str, name: str, n: int = 1) -> None:
        with self._lock:
            counters = self._routes.setdefault(route, RouteCounters())
            setattr(counters, name, getattr(counters, name) + n)

    def snapshot(self) -> dict[str, RouteCounters]:
        with self._lock:
            return {r: RouteCounters(**vars(c)) for r, c in self._routes.items()}

    def fields(self) -> dict[str, int]:
        """Flat `pipeline` fields: `notify_<counter>` totals and `notify_<route>_<counter>`."""
        snap = self.snapshot()
        out = {
            f"notify_{name}": sum(getattr(c, name) for c in snap.values())
            for name in _COUNTER_NAMES
        }
        for route, c in snap.items():
            out.update({f"notify_{route}_{name}": getattr(c, name) for name in _COUNTER_NAMES})
        return out


class PendingStore(Protocol):
    """Where pending deliveries outlive the process (``daemon.alerts.store.AlertStore``)."""

    def load_deliveries(self) -> list[PendingDelivery]: ...
    def save_deliveries(self, deliveries: Iterable[PendingDelivery]) -> None: ...
    def delete_deliveries(self, seqs: Iterable[int]) -> None: ...
