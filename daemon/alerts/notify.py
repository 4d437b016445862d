"""Alert notification delivery: routes of apprise URLs, a bounded queue, retries per URL.

The alert engine calls `Notifier.submit(route, title, body, key=...)`, which only
enqueues and returns: ingestion never waits on a mail server or a webhook. One
worker thread delivers through apprise (one `Apprise` object per route, built
once, each URL tagged so it can be notified on its own). A URL that fails is
retried alone with exponential backoff and jitter, so one dead webhook does not
resend the mail that already went out. The queue is bounded; when full, a
warning is dropped before any critical or escalation delivery (the oldest of
the lowest priority goes first), counted per route.

With a `PendingStore` (the alert state file), a delivery is written down when
queued, updated on each retry and deleted once delivered, given up or dropped;
stopping keeps what is pending for the next Notifier on the store, which sends
it and continues its count of tries. One in flight when the process died is
sent again: at least once, never silently lost.

URLs carry secrets (SMTP passwords, webhook tokens). Only apprise's privacy form
of a URL, without its query, is ever logged, and a filter on the loggers apprise
and its HTTP client write to masks every secret taken from the configured URLs,
at every level.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleet.daemon.alerts.model import PendingDelivery
from fleet.daemon.alerts.notify_policy import (
    NotifyCounters,
    PendingStore,
    RetryPolicy,
    RouteCounters,
)
from fleet.daemon.alerts.redact import REDACTOR, plugin_url, privacy_diff, redact, secrets_of
from fleet.daemon.supervisor import supervise

if TYPE_CHECKING:
    import apprise

_LOG = logging.getLogger(__name__)

__all__ = ["Notifier", "NotifyCounters", "PendingStore", "RetryPolicy", "RouteCounters"]

NOTIFY_TYPES = ("info", "success", "warning", "failure")
# Dropped first when the queue is full; every other route (critical, escalation) ranks above.
_LOW_PRIORITY_ROUTES = frozenset({"warning"})


@dataclass(frozen=True)
class _Target:
    route: str
    tag: str
    label: str  # privacy form, query stripped: safe to log


@dataclass
class _Delivery:
    seq: int
    target: _Target
    title: str
    body: str
    key: str
    notify_type: str
    due: float
    tries: int = 0

    def stored(self) -> PendingDelivery:
        t = self.target
        return PendingDelivery(
            self.seq, t.route, t.tag, t.label, self.title, self.body, self.key, self.notify_type,
            self.tries,
        )  # fmt: skip

    @property
    def drop_rank(self) -> tuple[int, int]:
        """Lowest first: warnings before the rest, then the oldest submission."""
        return (0 if self.target.route in _LOW_PRIORITY_ROUTES else 1), self.seq


@dataclass
class _Route:
    # None without URLs: apprise (~16 MB, ~0.2 s to import) loads only for a route that sends.
    apprise: apprise.Apprise | None = None
    targets: list[_Target] = field(default_factory=list)


class Notifier:
    """Delivers notifications on named routes of apprise URLs from one worker thread.

    `routes` maps a route name ("warning", "critical", "escalation") to its
    apprise URLs; an empty list is valid (nothing is sent, counted as skipped).
    An invalid URL raises ValueError here, naming the route and position but
    never the URL. `max_pending` bounds the deliveries waiting (new or retrying).
    `min_interval_s`, if given, replaces apprise's own per-URL throttle (5.5 s
    between two mails through the same SMTP URL, for instance). `store`, if
    given, keeps pending deliveries across restarts (see the module docstring);
    what it holds from before is queued here, due at once.
    """

    def __init__(
        self,
        routes: Mapping[str, Sequence[str]],
        *,
        retry: RetryPolicy | None = None,
        max_pending: int = 1000,
        min_interval_s: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: PendingStore | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.retry = retry or RetryPolicy()
        self.max_pending = max_pending
        self.counters = NotifyCounters(routes)
        self._rng = rng or random.Random()
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[int, _Delivery] = {}
        self._seq = 0
        self._stopping = False
        self._busy = False
        self._unknown_routes: set[str] = set()
        with warnings.catch_warnings():
            # The first URL parsed loads every apprise plugin; the e-mail one
            # imports the deprecated `imghdr` (for PGPy), whose warning must not
            # become an error where warnings are errors (the test suite).
            warnings.simplefilter("ignore", DeprecationWarning)
            self._routes = {
                name: self._build_route(name, urls, min_interval_s) for name, urls in routes.items()
            }
        self._store = store
        if store is not None:
            self._restore(store)

    @staticmethod
    def _build_route(name: str, urls: Sequence[str], min_interval_s: float | None) -> _Route:
        if not urls:
            return _Route()
        import apprise

        for url in urls:
            REDACTOR.add(secrets_of(url))
        # Not async: one URL is notified at a time, so apprise need not fan out to its pool.
        client = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
        route = _Route(client)
        for index, url in enumerate(urls):
            tag = f"url{index}"
            if not client.add(url, tag=tag):
                scheme = url.split("://", 1)[0] if "://" in url else "?"
                raise ValueError(
                    f"route {name!r}: URL #{index + 1} (scheme {scheme!r}) is not a valid apprise URL"
                )
            plugin = client[index]
            REDACTOR.add(privacy_diff(plugin))
            if min_interval_s is not None:
                plugin.request_rate_per_sec = min_interval_s
            label = redact(plugin_url(plugin, privacy=True).split("?", 1)[0])
            route.targets.append(_Target(name, tag, label))
        return route

    def routes(self) -> dict[str, list[str]]:
        """Route name -> the loggable (privacy) form of each of its URLs."""
        return {name: [t.label for t in r.targets] for name, r in self._routes.items()}

    def pending(self) -> int:
        """Deliveries waiting (first try or retry), not counting one in progress."""
        with self._cond:
            return len(self._pending)

    def idle(self) -> bool:
        """Nothing pending and nothing being delivered."""
        with self._cond:
            return not self._pending and not self._busy

    def submit(
        self, route: str, title: str, body: str, *, key: str, notify_type: str = "info"
    ) -> None:
        """Enqueue one notification to every URL of `route`; never blocks on delivery.

        `key` names the alert (e.g. "sw-03/battery_critical") in logs.
        `notify_type` is apprise's: info, success, warning or failure.
        """
        if notify_type not in NOTIFY_TYPES:
            raise ValueError(f"notify_type must be one of {NOTIFY_TYPES}, not {notify_type!r}")
        found = self._routes.get(route)
        if found is None:
            self.counters.add(route, "skipped")
            if route not in self._unknown_routes:
                self._unknown_routes.add(route)
                _LOG.warning("no notification route %r; %s not sent", route, key)
            return
        self.counters.add(route, "submitted")
        if not found.targets:
            self.counters.add(route, "skipped")
            _LOG.debug("route %r has no URLs; %s not sent", route, key)
            return
        now = self._clock()
        with self._cond:
            new = []
            for target in found.targets:
                self._seq += 1
                new.append(
                    _Delivery(self._seq, target, title, body or title, key, notify_type, now)
                )
        # On disk before the worker can see it: a delivery finished before it was written
        # would leave a row behind and be sent again after a restart.
        self._persist(new)
        with self._cond:
            self._pending.update((d.seq, d) for d in new)
            dropped = self._drop_lowest_locked()
            self._cond.notify_all()
        self._count_dropped(dropped, f"notification queue full ({self.max_pending})")

    def _drop_lowest_locked(self) -> list[_Delivery]:
        dropped = []
        while len(self._pending) > self.max_pending:
            # By submission within a priority: a long-retrying delivery goes before a fresh one.
            lowest = min(self._pending.values(), key=lambda d: d.drop_rank)
            dropped.append(self._pending.pop(lowest.seq))
        return dropped

    def _count_dropped(self, dropped: Iterable[_Delivery], why: str) -> None:
        dropped = list(dropped)
        self._forget([d.seq for d in dropped])
        for d in dropped:
            self.counters.add(d.target.route, "dropped")
            _LOG.warning("%s: dropped %s to %s (%d tries)", why, d.key, d.target.label, d.tries)

    # --- the store (a failing disk costs durability, never a notification) -------------------

    def _restore(self, store: PendingStore) -> None:
        now = self._clock()
        kept, lost = [], []
        try:
            rows = store.load_deliveries()
        except sqlite3.Error as exc:
            _LOG.error("pending notifications could not be read back (%s)", exc)
            rows = []
        for row in rows:
            self._seq = max(self._seq, row.seq)
            route = self._routes.get(row.route)
            targets = [] if route is None else [t for t in route.targets if t.label == row.label]
            # The same position if it is still the same URL; else the same URL elsewhere.
            target = next((t for t in targets if t.tag == row.tag), targets[0] if targets else None)
            if target is None:
                lost.append(row)
                continue
            kept.append(
                _Delivery(
                    row.seq, target, row.title, row.body, row.key, row.notify_type, now, row.tries
                )
            )
        with self._cond:
            self._pending.update((d.seq, d) for d in kept)
            dropped = self._drop_lowest_locked()
        if kept:
            _LOG.info("%d notification deliveries pending from before the restart", len(kept))
        for row in lost:
            self.counters.add(row.route, "dropped")
            _LOG.warning(
                "pending %s to %s dropped: that URL is no longer configured", row.key, row.label
            )
        self._forget([row.seq for row in lost])
        self._count_dropped(dropped, f"notification queue full ({self.max_pending})")

    def _persist(self, deliveries: list[_Delivery]) -> None:
        if self._store is None or not deliveries:
            return
        try:
            self._store.save_deliveries(d.stored() for d in deliveries)
        except sqlite3.Error as exc:
            _LOG.error("pending notifications not saved (%s); they are kept in memory only", exc)

    def _forget(self, seqs: list[int]) -> None:
        if self._store is None or not seqs:
            return
        try:
            self._store.delete_deliveries(seqs)
        except sqlite3.Error as exc:
            # Left on disk, they may be sent once more after a restart: better than never.
            _LOG.error("settled notifications not removed from the store (%s)", exc)

    def start(self) -> Callable[[float], bool]:
        """Start the worker; returns its undo: stop(timeout) -> joined in time.

        Deliveries still pending at stop stay in the store for the next start; without
        a store they are dropped (counted and logged).
        """
        with self._cond:
            self._stopping = False
        undo = supervise("notify", self._work)

        def stop(timeout: float = 30.0) -> bool:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            joined = undo(timeout)
            if self._store is not None:
                with self._cond:
                    kept = len(self._pending)
                if kept:
                    _LOG.info("notifier stopped; %d deliveries kept for the next start", kept)
                return joined
            with self._cond:
                left = list(self._pending.values())
                self._pending.clear()
            self._count_dropped(left, "notifier stopped")
            return joined

        return stop

    def _work(self, stop: threading.Event) -> None:
        while True:
            with self._cond:
                delivery = self._next_due_locked(stop)
                if delivery is None:
                    return
                self._busy = True
            try:
                ok = self._deliver(delivery)
            finally:
                with self._cond:
                    self._busy = False
            self._settle(delivery, ok)

    def _next_due_locked(self, stop: threading.Event) -> _Delivery | None:
        """Wait for the earliest due delivery and take it; None when stopping."""
        while not (self._stopping or stop.is_set()):
            if not self._pending:
                self._cond.wait()
                continue
            first = min(self._pending.values(), key=lambda d: d.due)
            wait = first.due - self._clock()
            if wait > 0:
                self._cond.wait(wait)
                continue
            return self._pending.pop(first.seq)
        return None

    def _deliver(self, d: _Delivery) -> bool:
        d.tries += 1
        client = self._routes[d.target.route].apprise
        assert client is not None  # a delivery has a target: its route has URLs
        import apprise  # loaded already: the route's client was made with it

        try:
            result = client.notify(
                body=d.body,
                title=d.title,
                notify_type=d.notify_type,
                tag=d.target.tag,
                # Plain text: apprise's default HTML mail loses the line breaks in its
                # text part, and the alert text is written to be read as it is.
                body_format=apprise.NotifyFormat.TEXT,
            )
        except Exception as exc:  # noqa: BLE001 - a plugin bug is one failed try, not a dead worker
            _LOG.warning("%s to %s: %s", d.key, d.target.label, redact(repr(exc)))
            return False
        return bool(result)

    def _settle(self, d: _Delivery, ok: bool) -> None:
        route = d.target.route
        if ok:
            self._forget([d.seq])
            self.counters.add(route, "delivered")
            log = _LOG.info if d.tries > 1 else _LOG.debug
            log("%s delivered to %s (try %d)", d.key, d.target.label, d.tries)
            return
        if d.tries >= self.retry.attempts:
            self._forget([d.seq])
            self.counters.add(route, "failed")
            _LOG.error("%s to %s failed %d times; giving up", d.key, d.target.label, d.tries)
            return
        self._persist([d])  # its count of tries carries over a restart
        delay = self.retry.delay_s(d.tries, self._rng)
        d.due = self._clock() + delay
        self.counters.add(route, "retried")
        _LOG.warning(
            "%s to %s failed (try %d of %d); retrying in %.1f s",
            d.key,
            d.target.label,
            d.tries,
            self.retry.attempts,
            delay,
        )
        with self._cond:
            # Even when stopping: stop() counts what is left as dropped.
            self._pending[d.seq] = d
            dropped = self._drop_lowest_locked()
        self._count_dropped(dropped, f"notification queue full ({self.max_pending})")
