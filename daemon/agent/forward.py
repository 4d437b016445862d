"""Store and forward: readings go to the disk outbox, and from there to the broker, in order.

Two tasks. The writer commits what the drivers produced to the outbox in
batches (one transaction per batch, off the event loop). The forwarder, while
the link is up, takes the outbox head, publishes it at QoS 1, waits until the
broker acknowledged everything paho had outstanding and only then removes
those rows. If the link drops meanwhile the rows stay: paho re-sends its
queued messages on reconnect. A crash between the broker's ack and the
removal sends those rows again on the next start - duplicates the collector
recognises by seq and counts.

All outbox calls run on one worker thread (the Outbox is single-threaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from daemon.agent.outbox import Outbox
from daemon.mqtt import MqttLink
from daemon.spool import Depth, Entry

_LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_FLUSH_DELAY_S = 0.05  # readings gathered into one outbox transaction
_IDLE_WAIT_S = 1.0  # re-check the link this often even without a wake-up
_ACK_POLL_MIN_S = 0.002
_ACK_POLL_MAX_S = 0.05


@dataclass(slots=True)
class ForwardStats:
    stored: int = 0
    forwarded: int = 0
    dropped: int = 0


class StoreAndForward:
    def __init__(
        self, open_outbox: Callable[[], Outbox], link: MqttLink, *, batch: int = 100
    ) -> None:
        self._open_outbox = open_outbox
        self._outbox: Outbox | None = None
        self._link = link
        self._batch = batch
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending: list[Entry] = []
        self._seqs: dict[str, int] = {}
        self._has_pending = asyncio.Event()
        self._has_rows = asyncio.Event()
        self._link_up = asyncio.Event()
        self.stats = ForwardStats()

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None, "open() first"
        return self._outbox

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
        self._has_pending.set()

    def link_up(self) -> None:
        """The link (re)connected (on the event loop): wake the forwarder."""
        self._link_up.set()

    async def run_writer(self) -> None:
        while True:
            await self._has_pending.wait()
            await asyncio.sleep(_FLUSH_DELAY_S)
            await self.flush()

    async def flush(self) -> None:
        """Commit every pending message to the outbox."""
        self._has_pending.clear()
        entries, seqs = self._pending, self._seqs
        if not entries:
            return
        self._pending, self._seqs = [], {}
        dropped = await self._call(self.outbox.add, entries, seqs)
        self.stats.stored += len(entries)
        if dropped:
            self.stats.dropped += dropped
            _LOG.warning(
                "outbox full: dropped the %d oldest readings (%d dropped since start)",
                dropped,
                self.stats.dropped,
            )
        self._has_rows.set()

    async def run_forwarder(self) -> None:
        while True:
            if not self._link.connected:
                self._link_up.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._link_up.wait(), _IDLE_WAIT_S)
                continue
            self._has_rows.clear()  # before taking: a later flush sets it again
            rows = await self._call(self.outbox.take, self._batch)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_rows.wait(), _IDLE_WAIT_S)
                continue
            for row in rows:
                self._link.publish(row.topic, row.lines.encode(), qos=1)
            await self._acknowledged()
            await self._call(self.outbox.done, rows)
            self.stats.forwarded += len(rows)

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
        if self._outbox is not None:
            await self._call(self._outbox.close)
        self._io.shutdown(wait=True)
