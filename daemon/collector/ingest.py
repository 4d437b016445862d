"""From MQTT message to spooled line protocol, acknowledging only what is safe.

paho's thread drops each message into a queue; this thread takes them in
batches (whatever arrived since the last commit), validates each, commits the
batch's readings to the spool in one transaction and only then acknowledges
the batch in arrival order (MQTT wants PUBACKs in order). A bad message is
published to the dead-letter topic with its reason, counted, and acknowledged
with its batch: it can never become good by being redelivered.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon import wire
from daemon.collector.seqtrack import SeqTracker
from daemon.mqtt import Inbound
from daemon.spool import Entry, Spool

_LOG = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
Ack = Callable[[Inbound], None]


@dataclass
class IngestCounters:
    """Owned by the ingest thread; the stats reporter only reads them."""

    received: int = 0
    accepted: int = 0
    ignored: int = 0
    spooled: int = 0
    dead_lettered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class Ingest:
    def __init__(
        self,
        *,
        decoder: wire.Decoder,
        spool: Spool,
        publish: Publish,
        ack: Ack,
        deadletter_topic: Callable[[str], str],
        on_spooled: Callable[[], None],
        batch_max: int,
        on_control: Callable[[Inbound], bool] | None = None,
        on_readings: Callable[[list[wire.Reading]], None] | None = None,
    ) -> None:
        self._decoder = decoder
        self._spool = spool
        self._publish = publish
        self._ack = ack
        self._deadletter_topic = deadletter_topic
        self._on_spooled = on_spooled
        self._batch_max = batch_max
        # Availability and acknowledgement messages: consumed (True) by the alert service.
        self._on_control = on_control
        # Readings once on disk: the alert engine's input.
        self._on_readings = on_readings
        self._inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.counters = IngestCounters()
        self.seq = SeqTracker()

    def put(self, message: Inbound) -> None:
        """Called on paho's network thread for every message."""
        self._inbox.put(message)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batch = self._take_batch(timeout=0.2)
                if batch:
                    self._process(batch, stop)
        finally:
            self._spool.close()

    def _take_batch(self, timeout: float) -> list[Inbound]:
        try:
            batch = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < self._batch_max:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Inbound], stop: threading.Event) -> None:
        entries: list[Entry] = []
        dead: list[tuple[str, bytes]] = []
        c = self.counters
        now_ms = int(time.time() * 1000)
        readings: list[wire.Reading] = []
        for message in batch:
            if self._on_control is not None and self._on_control(message):
                continue
            c.received += 1
            try:
                reading = self._decoder.decode(message.topic, message.payload)
                lines = wire.reading_lines(reading) if reading is not None else []
            except wire.Rejected as rejected:
                reason, detail = rejected.reason, rejected.detail
                _LOG.debug("rejected %s: %s: %s", message.topic[:200], reason, detail)
            except Exception as exc:  # noqa: BLE001 - one message must not stall the stream
                # A bug, not bad input: keep the message (dead letter) and the stream.
                _LOG.exception("failed on a message from %s", message.topic[:200])
                reason, detail = wire.Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:300]
            else:
                if reading is None:
                    c.ignored += 1
                else:
                    c.accepted += 1
                    self.seq.observe(reading.site, reading.kind, reading.device, reading.seq)
                    readings.append(reading)
                    entries.append(Entry(message.topic, "\n".join(lines), len(lines)))
                continue
            c.rejected[reason] += 1
            payload = wire.deadletter_payload(
                message.topic, message.payload, reason, detail, now_ms
            )
            dead.append((self._deadletter_topic(message.topic), payload))
        if entries and not self._commit(entries, stop):
            return  # stopping before the spool took them: leave them unacknowledged
        for topic, payload in dead:
            self._publish(topic, payload)
        c.dead_lettered += len(dead)
        for message in batch:
            self._ack(message)
        c.spooled += len(entries)
        if entries:
            self._on_spooled()
        if readings and self._on_readings is not None:
            self._on_readings(readings)

    def _commit(self, entries: list[Entry], stop: threading.Event) -> bool:
        """Commit to the spool, waiting (not dropping) while it is full or failing."""
        complained = False
        while not stop.is_set():
            if self._spool.full:
                if not complained:
                    _LOG.error(
                        "spool full (%d bytes); not acknowledging until InfluxDB drains it "
                        "- the broker keeps the messages meanwhile",
                        self._spool.depth().bytes,
                    )
                    complained = True
                stop.wait(0.5)
                continue
            try:
                self._spool.append(entries)
            except sqlite3.Error as exc:
                # A full disk or a locked file heals; dropping the readings would not.
                _LOG.error("spool commit failed (%s); retrying", exc)
                stop.wait(1.0)
                continue
            return True
        return False
