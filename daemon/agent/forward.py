"""Store and forward: readings go to the disk outbox, and from there to the broker, in order.

Two tasks. The writer commits what the drivers produced to the outbox in
batches (one transaction per batch, off the event loop). The forwarder, while
the link is up, takes the outbox head, publishes it at QoS 1, waits until the
broker acknowledged everything paho had outstanding and only then removes
those rows. If the link drops meanwhile the rows stay: paho re-sends its
queued messages on reconnect. A crash between the broker's ack and the
removal sends those rows again on the next start - duplicates the collector
recognises by seq and counts.

A disk that fails (full, read-only, I/O error) loses nothing silently: a
batch the outbox could not commit stays in memory (at most `hold_max`
readings, the oldest beyond dropped and counted) and is retried with backoff;
rows the broker acknowledged but that could not be removed are removed later,
never published again. `on_problem` tells the agent while the outbox fails,
so that it reports itself offline (see app.py).

A reading the broker refuses (MQTT 5: a PUBACK reason code of 0x80 or more,
e.g. "not authorized" when the agent publishes a device its broker user may
not) is not sent: it leaves the queue, is kept in the outbox's `refused`
table with the broker's reason, counted (`refused`) and logged (by the MQTT
link, at most once a minute per topic class), and the readings behind it go
on. Retrying it would hold every reading behind it until the ACL changes.
Under MQTT 3.1.1 the broker acknowledges a refused publish like any other:
nothing here can tell it from a delivered one.

Every reading is counted once: `accepted` = `forwarded` + `refused` +
`dropped` + what is in the outbox + `held` (plus, after a restart, what the
outbox held from before).

All outbox calls run on one worker thread (the Outbox is single-threaded).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from fleet.daemon import liveness
from fleet.daemon.agent.outbox import Outbox
from fleet.daemon.mqtt import MqttLink
from fleet.daemon.spool import Depth, Entry, SpoolRow

_LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_FLUSH_DELAY_S = 0.05  # readings gathered into one outbox transaction
_IDLE_WAIT_S = 1.0  # re-check the link this often even without a wake-up
_ACK_POLL_MIN_S = 0.002
_ACK_POLL_MAX_S = 0.05
_RETRY_MIN_S = 0.05  # a failing outbox is tried again after this, doubling...
_RETRY_MAX_S = 2.0  # ...up to this: cheap (one small transaction), and quick to recover

WRITE = "outbox write"  # the problems reported through `on_problem`
READ = "outbox read"

OnProblem = Callable[[str, str | None], None]  # (what, sentence or None when it works again)


@dataclass(slots=True)
class ForwardStats:
    accepted: int = 0  # readings handed to put()
    stored: int = 0  # committed to the outbox
    forwarded: int = 0  # acknowledged by the broker and removed from the outbox
    refused: int = 0  # refused by the broker (MQTT 5), moved to the outbox's refused table
    dropped: int = 0  # lost, each counted once: outbox full, hold full, refused by the client
    store_errors: int = 0  # outbox operations that failed (and were retried)


class _Trouble:
    """One kind of outbox failure: backoff, one log line per episode, the problem report."""

    def __init__(self, what: str, on_problem: OnProblem) -> None:
        self.what = what
        self._on_problem = on_problem
        self.since: float | None = None
        self._delay = _RETRY_MIN_S

    def failed(self, exc: Exception, detail: str) -> float:
        """Note a failure; returns the pause before the next attempt."""
        if self.since is None:
            self.since = time.monotonic()
            _LOG.error("%s failed (%s): %s; retrying", self.what, exc, detail)
            self._on_problem(self.what, f"{self.what} failed: {exc}")
        else:
            _LOG.debug("%s failed again (%s)", self.what, exc)
        delay = self._delay
        self._delay = min(_RETRY_MAX_S, self._delay * 2)
        return delay

    def worked(self, detail: str) -> None:
        if self.since is not None:
            _LOG.info(
                "%s works again after %.1f s%s", self.what, time.monotonic() - self.since, detail
            )
            self.since = None
            self._on_problem(self.what, None)
        self._delay = _RETRY_MIN_S


def _no_problem(what: str, problem: str | None) -> None:
    return None


class StoreAndForward:
    def __init__(
        self,
        open_outbox: Callable[[], Outbox],
        link: MqttLink,
        *,
        batch: int = 100,
        hold_max: int = 10_000,
        on_problem: OnProblem = _no_problem,
    ) -> None:
        self._open_outbox = open_outbox
        self._outbox: Outbox | None = None
        self._link = link
        self._batch = batch
        self._hold_max = hold_max
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending: list[Entry] = []
        self._seqs: dict[str, int] = {}
        self._has_pending = asyncio.Event()
        self._has_rows = asyncio.Event()
        self._link_up = asyncio.Event()
        self._write = _Trouble(WRITE, on_problem)
        self._read = _Trouble(READ, on_problem)
        self._dropped_held = 0  # of the current write trouble, for its log line
        self.stats = ForwardStats()

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    def on_worker(self, fn: Callable[[Outbox], T]) -> concurrent.futures.Future[T]:
        """Run `fn(outbox)` on the outbox's thread (from any thread); for tests and drills."""
        return self._io.submit(lambda: fn(self.outbox))

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None, "open() first"
        return self._outbox

    @property
    def held(self) -> int:
        """Readings waiting in memory for the outbox."""
        return len(self._pending)

    async def open(self) -> dict[str, int]:
        """Open the outbox; returns each device's last seq number."""
        self._outbox = await self._call(self._open_outbox)
        if self.outbox.depth().rows:
            self._has_rows.set()
        return await self._call(self.outbox.seqs)

    def depth(self) -> Depth:
        return self.outbox.depth()

    def put(self, topic: str, payload: bytes, device: str, seq: int) -> None:
        """Queue one message for the outbox (on the event loop; never blocks)."""
        self._pending.append(Entry(topic, payload.decode(), 1))
        self._seqs[device] = seq
        self.stats.accepted += 1
        self._bound_held()
        self._has_pending.set()

    def _bound_held(self) -> None:
        over = len(self._pending) - self._hold_max
        if over <= 0:
            return
        del self._pending[:over]  # the oldest: as the outbox itself drops
        self.stats.dropped += over
        if self._dropped_held == 0:
            _LOG.error(
                "%d readings wait in memory for the outbox: dropping the oldest beyond that "
                "(counted; the collector sees the seq gap)",
                self._hold_max,
            )
        self._dropped_held += over

    def link_up(self) -> None:
        """The link (re)connected (on the event loop): wake the forwarder."""
        self._link_up.set()

    async def run_writer(self) -> None:
        while True:
            await self._has_pending.wait()
            await asyncio.sleep(_FLUSH_DELAY_S)
            pause = await self.flush()
            if pause:
                await asyncio.sleep(pause)

    async def flush(self) -> float:
        """Commit every pending message to the outbox; 0, else the pause before trying again.

        A batch the outbox refuses goes back to the front of the pending
        readings (in order, bounded), to be committed by a later flush.
        """
        self._has_pending.clear()
        entries, seqs = self._pending, self._seqs
        if not entries:
            return 0.0
        self._pending, self._seqs = [], {}
        commit = asyncio.ensure_future(self._commit(entries, seqs))
        try:
            return await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The agent stops: the commit under way still ends in the outbox or back
            # in memory (for the stop's last flush), never in between.
            with contextlib.suppress(Exception):
                await commit
            raise

    async def _commit(self, entries: list[Entry], seqs: dict[str, int]) -> float:
        try:
            dropped = await self._call(self.outbox.add, entries, seqs)
        except Exception as exc:
            # Not committed (Outbox.add raises only before the entries are in): keep them.
            self._hold(entries, seqs)
            if not isinstance(exc, sqlite3.Error):
                raise  # a bug: the writer's supervisor logs it and restarts the writer
            self.stats.store_errors += 1
            return self._write.failed(
                exc, f"{self.held} reading(s) held in memory (at most {self._hold_max})"
            )
        self.stats.stored += len(entries)
        if self._write.since is not None:
            self._write.worked(
                f": {len(entries)} held reading(s) stored, {self._dropped_held} dropped "
                "meanwhile because memory was full"
            )
        elif self._dropped_held:
            _LOG.warning("%d reading(s) dropped: memory was full", self._dropped_held)
        self._dropped_held = 0
        self._count_trimmed(dropped)
        self._has_rows.set()
        return 0.0

    def _hold(self, entries: list[Entry], seqs: dict[str, int]) -> None:
        self._pending = entries + self._pending
        self._seqs = {**seqs, **self._seqs}  # the newer marks win
        self._bound_held()
        self._has_pending.set()

    def _count_trimmed(self, dropped: int) -> None:
        if dropped:
            self.stats.dropped += dropped
            _LOG.warning(
                "outbox full: dropped the %d oldest readings (%d dropped since start)",
                dropped,
                self.stats.dropped,
            )

    async def run_forwarder(self) -> None:
        while True:
            liveness.beat()  # every turn, idle ones too: the watchdog's proof of life
            if not self._link.connected:
                self._link_up.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._link_up.wait(), _IDLE_WAIT_S)
                continue
            self._has_rows.clear()  # before taking: a later flush sets it again
            try:
                rows = await self._call(self.outbox.take, self._batch)
            except sqlite3.Error as exc:
                self.stats.store_errors += 1
                await asyncio.sleep(self._read.failed(exc, "nothing is forwarded meanwhile"))
                continue
            if not rows:
                self._read.worked("")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_rows.wait(), _IDLE_WAIT_S)
                continue
            mids, unsendable = self._publish(rows)
            await self._acknowledged()
            refused = self._refused(mids)
            removed = await self._remove(rows, refused)
            self.stats.refused += len(removed & refused.keys())
            self.stats.dropped += len(removed & unsendable)
            self.stats.forwarded += len(removed - unsendable - refused.keys())

    def _publish(self, rows: list[SpoolRow]) -> tuple[dict[int, int], set[int]]:
        """Hand `rows` to paho: each sent row's message id, and the rows paho would not send."""
        mids: dict[int, int] = {}
        unsendable: set[int] = set()
        for row in rows:
            try:
                mids[row.id] = self._link.publish_tracked(row.topic, row.lines.encode(), qos=1)
            except ValueError as exc:  # a wildcard topic, an oversized payload: not sendable
                unsendable.add(row.id)
                _LOG.error(
                    "dropped outbox row %d: the MQTT client refuses it (%s); topic %.100r",
                    row.id,
                    exc,
                    row.topic,
                )
        return mids, unsendable

    def _refused(self, mids: dict[int, int]) -> dict[int, str]:
        """The rows the broker refused (all of `mids` are acknowledged), with its reasons."""
        refusals = self._link.take_refusals(mids.values())
        refused = {row: r.describe() for row, mid in mids.items() if (r := refusals.get(mid))}
        if refused and not self.stats.refused:
            _LOG.warning(
                "the broker refuses readings of this agent (%s): each is kept in the outbox's "
                "refused table and not retried; the readings behind it go on. Check the "
                "agent's devices in [[agents]] and regenerate the broker (fleet broker-config)",
                next(iter(refused.values())),
            )
        return refused

    async def _remove(self, rows: list[SpoolRow], refused: dict[int, str]) -> set[int]:
        """Remove acknowledged rows, retrying until the outbox lets us: never publish them twice.

        The refused ones go to the outbox's refused table on the way."""
        while True:
            liveness.beat()  # retrying a failing disk is work: a restart would not mend it
            try:
                removed = await self._call(self.outbox.done, rows, refused)
            except sqlite3.Error as exc:
                self.stats.store_errors += 1
                pause = self._read.failed(exc, f"{len(rows)} acknowledged reading(s) to remove")
                await asyncio.sleep(pause)
                continue
            self._read.worked("")
            return removed

    async def _acknowledged(self) -> None:
        """Wait until the broker acknowledged every message paho has outstanding."""
        pause = _ACK_POLL_MIN_S
        while self._link.unacknowledged():
            await asyncio.sleep(pause)
            pause = min(_ACK_POLL_MAX_S, pause * 2)

    async def drain(self, within_s: float) -> bool:
        """Wait (up to `within_s`) until the outbox is empty and acknowledged."""
        deadline = time.monotonic() + within_s
        while self.outbox.depth().rows or self._link.unacknowledged():
            if time.monotonic() >= deadline or not self._link.connected:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        if self._pending:
            lost = len(self._pending)
            self.stats.dropped += lost
            self._pending, self._seqs = [], {}
            _LOG.error(
                "%d reading(s) could not be stored in the outbox before the stop and are lost "
                "(counted; the collector sees the seq gap)",
                lost,
            )
        if self._outbox is not None:
            try:
                await self._call(self._outbox.close)
            except sqlite3.Error as exc:
                _LOG.warning("closing the outbox failed: %s", exc)
        self._io.shutdown(wait=True)
