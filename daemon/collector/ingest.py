"""From MQTT message to spooled line protocol, acknowledging only what is safe.

paho's thread drops each message into a bounded inbox (daemon/mqtt_inbox.py:
paho stops reading while it is full); this thread takes them in batches
(whatever arrived since the last commit), validates each, commits the
batch's readings to the spool in one transaction and only then acknowledges
the batch in arrival order (MQTT wants PUBACKs in order). A bad message is
published to the dead-letter topic with its reason, counted, and acknowledged
with its batch: it can never become good by being redelivered.

The batch's readings go to the alert engine (its own thread) just before the
commit, so that it judges them while the spool syncs: an alert waits for one
fsync (its own state's), not two in a row. A reading it saw that the spool then
does not take (the collector stops first) stays unacknowledged and comes again;
the engine knows it by its seq (its ts without one): nothing fires twice
(alerts/clock.py).

Everything that runs for one message (the control hook, decoding, its lines,
seq tracking) runs under that message's own guard, so whatever it raises -
RecursionError and MemoryError included - becomes that message's dead letter
(`internal_error` when it is not a plain rejection); the rest of the batch is
spooled and acknowledged, and the thread never restarts because of input.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.daemon import liveness, wire
from fleet.daemon.collector.deadletters import DeadLetter
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.collector.seqtrack import SeqTracker
from fleet.daemon.mqtt import Inbound
from fleet.daemon.mqtt_inbox import Inbox
from fleet.daemon.spool import Entry, SeqRow, Spool
from fleet.daemon.wire.fast import builder

_LOG = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
# Acknowledges a batch, in arrival order (MqttLink.ack_all).
Ack = Callable[[list[Inbound]], None]
# Keeps a batch's dead letters durably (originals, whole); returns once they are on disk.
KeepDeadLetters = Callable[[list[DeadLetter]], object]


@dataclass
class IngestCounters:
    """Owned by the ingest thread; the stats reporter only reads them."""

    received: int = 0
    accepted: int = 0
    ignored: int = 0
    # Another collector's: a site this one does not own (collector.sites); not stored here.
    not_ours: int = 0
    spooled: int = 0
    dead_lettered: int = 0
    # A step after the commit failed (dead-letter publish, ack, hand-over): logged, counted.
    internal_errors: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


# One per reading: without the dataclass __init__ (fast.builder says why).
_ENTRY = builder(Entry)

# Why a message was refused: (reason, detail).
_Failure = tuple[wire.Reason, str]


def ingest_inbox(batch_max: int, *, window: int = 0, keepalive_s: float = 30.0) -> Inbox[Inbound]:
    """paho reads while fewer than two batches wait (one being committed, the next one
    ready); in a stall longer than half a keepalive it reads on up to the broker's `window`
    (at least four batches), so that the link stays up (daemon/mqtt_inbox.py)."""
    return Inbox(
        bound=2 * batch_max,
        hard_bound=max(window, 4 * batch_max),
        max_pause_s=keepalive_s / 2,
    )


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
        on_readings: Callable[[list[wire.DecodedReading]], None] | None = None,
        keep_dead_letters: KeepDeadLetters | None = None,
        inbox: Inbox[Inbound] | None = None,
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
        # The batch's readings, before its commit: the alert engine's and the board's input.
        self._on_readings = on_readings
        self._keep_dead_letters = keep_dead_letters
        self.inbox: Inbox[Inbound] = inbox or ingest_inbox(batch_max)
        self.counters = IngestCounters()
        # Why the spool refuses commits (a full disk, a full spool) and since when (monotonic).
        self.commit_error: str | None = None
        self._commit_since: float | None = None
        # The last state of each device's seq, as committed with the spool's rows.
        self.seq = SeqTracker(self._restored_seq(spool))

    @staticmethod
    def _restored_seq(spool: Spool) -> list[SeqRow]:
        # An aid to counting, not data: a state that cannot be read costs the gaps across
        # this one restart, never the start.
        try:
            return spool.seq_rows()
        except (sqlite3.Error, ValueError, TypeError) as exc:
            _LOG.warning("could not read the devices' last seq (%s); counting afresh", exc)
            return []

    def put(self, message: Inbound) -> None:
        """A received message into the inbox (the collector's link puts into it directly)."""
        self.inbox.put(message)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                liveness.beat()  # every turn, idle ones too: the watchdog's proof of life
                batch = self.inbox.take(self._batch_max, timeout=0.2)
                if batch:
                    self._process(batch, stop)
        finally:
            self._spool.close()

    def _process(self, batch: list[Inbound], stop: threading.Event) -> None:
        c = self.counters
        now_ms = int(time.time() * 1000)
        entries: list[Entry] = []
        readings: list[wire.DecodedReading] = []
        dead: list[tuple[str, bytes]] = []
        kept: list[DeadLetter] = []
        for message in batch:
            # Everything that runs for one message runs inside its own guard: a
            # failure is that message's dead letter, never the batch's.
            control = self._control(message)
            if control is True:
                continue  # a control message, consumed
            if control is False:
                c.received += 1
                failure = self._reading(message, entries, readings)
                if failure is None:
                    continue
                c.rejected[failure[0]] += 1
            else:
                failure = control
            reason, detail = failure
            kept.append(DeadLetter(message.topic, message.payload, reason, detail, now_ms))
            letter = self._dead_letter(message, reason, detail, now_ms)
            if letter is not None:
                dead.append(letter)
        seq = self.seq.take_dirty()
        if readings and self._on_readings is not None:
            self._hand_over(readings)  # judged while the spool syncs (the module says why)
        if (entries or seq) and not self._commit(entries, stop, seq):
            return  # stopping before the spool took them: leave them unacknowledged
        if kept and self._keep_dead_letters is not None:
            # On disk before the batch is acknowledged (collector.deadletter_path).
            self._guarded("keeping dead letters", self._keep_dead_letters, kept)
        for topic, payload in dead:
            self._guarded("publishing a dead letter", self._publish, topic, payload)
        c.dead_lettered += len(dead)
        self._guarded("acknowledging the batch", self._ack, batch)
        c.spooled += len(entries)
        if entries:
            self._guarded("waking the writer", self._on_spooled)

    def _control(self, message: Inbound) -> bool | _Failure:
        """True when the alert service consumed the message, False when it is not a
        control message, else why it was refused."""
        if self._on_control is None:
            return False
        try:
            return self._on_control(message)
        except wire.Rejected as rejected:
            # Bad control input: the control side counted it; here it is dead-lettered.
            _LOG.debug("refused %s: %s: %s", message.topic[:200], rejected.reason, rejected.detail)
            return rejected.reason, rejected.detail
        except Exception as exc:  # noqa: BLE001 - one message must not stall the stream
            self.counters.received += 1
            self.counters.rejected[wire.Reason.INTERNAL_ERROR] += 1
            return self._internal_error(message, exc)

    def _reading(
        self, message: Inbound, entries: list[Entry], readings: list[wire.DecodedReading]
    ) -> _Failure | None:
        """Decode, build the lines, track seq; None once the reading is queued for the spool."""
        c = self.counters
        try:
            if not self._decoder.ours(message.topic):
                c.not_ours += 1
                return None
            reading = self._decoder.decode(message.topic, message.payload)
            if reading is None:
                c.ignored += 1
                return None
            entry = self._entry(message.topic, reading_lines(reading))
            self.seq.observe(reading.site, reading.kind, reading.device, reading.seq)
        except wire.Rejected as rejected:
            _LOG.debug("rejected %s: %s: %s", message.topic[:200], rejected.reason, rejected.detail)
            if rejected.reading is not None:
                # Kept as a dead letter (replayable), yet the alerts see it: a collector whose
                # clock is behind must not go blind; the engine treats its time as suspect.
                readings.append(rejected.reading)
            return rejected.reason, rejected.detail
        except Exception as exc:  # noqa: BLE001 - one message must not stall the stream
            return self._internal_error(message, exc)
        # Only now, when nothing for this message can fail any more: a message
        # that failed half-way leaves nothing behind in the batch.
        c.accepted += 1
        entries.append(entry)
        readings.append(reading)
        return None

    @staticmethod
    def _entry(topic: str, lines: list[str]) -> Entry:
        text = "\n".join(lines)
        # What SQLite would fail on at commit - for the whole batch - fails here, for this one
        # (a lone surrogate). ASCII, the usual case, cannot fail: a flag, not a copy.
        if not text.isascii():
            text.encode("utf-8")
        return _ENTRY(topic, text, len(lines))

    @staticmethod
    def _internal_error(message: Inbound, exc: BaseException) -> _Failure:
        # A bug, not bad input: keep the message (dead letter) and the stream.
        # RecursionError and MemoryError are Exceptions too: input can cause them.
        _LOG.error(
            "failed on a message from %s; it goes to the dead letters",
            message.topic[:200],
            exc_info=exc,
        )
        return wire.Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}"

    def _dead_letter(
        self, message: Inbound, reason: wire.Reason, detail: str, now_ms: int
    ) -> tuple[str, bytes] | None:
        try:
            payload = wire.deadletter_payload(
                message.topic, message.payload, reason, detail, now_ms
            )
            return self._deadletter_topic(message.topic), payload
        except Exception:  # noqa: BLE001 - counted below, the batch goes on
            self.counters.internal_errors += 1
            _LOG.exception(
                "could not make the dead letter of a message from %s", message.topic[:200]
            )
            return None

    def _guarded(self, what: str, step: Callable[..., object], *args: object) -> None:
        """A step beside the commit: its failure is logged and counted, never the batch's."""
        try:
            step(*args)
        except Exception:  # noqa: BLE001 - not the batch's failure; the thread must go on
            self.counters.internal_errors += 1
            _LOG.exception("%s failed", what)

    def _hand_over(self, readings: list[wire.DecodedReading]) -> None:
        """Readings to the alert engine and the board: a failure here costs alerting on them
        (logged, counted), never their storing or acknowledgement."""
        assert self._on_readings is not None
        self._guarded("handing the readings to the alert engine", self._on_readings, readings)

    def _commit(self, entries: list[Entry], stop: threading.Event, seq: list[SeqRow]) -> bool:
        """Commit to the spool, waiting (not dropping) while it is full or failing."""
        while not stop.is_set():
            liveness.beat()  # waiting for room is work: a restart would not make any
            if self._spool.full:
                self._cannot_commit(
                    "spool full",
                    f"spool full ({self._spool.depth().bytes} bytes); not acknowledging until "
                    "InfluxDB drains it - the broker keeps the messages meanwhile",
                )
                stop.wait(0.5)
                continue
            try:
                self._spool.append(entries, seq)
            except sqlite3.Error as exc:
                # A full disk or a locked file heals; dropping the readings would not.
                # Nothing is acknowledged meanwhile: the broker keeps the messages.
                self._cannot_commit(str(exc), f"spool commit failed ({exc}); retrying every 1 s")
                stop.wait(1.0)
                continue
            if self._commit_since is not None:
                _LOG.warning(
                    "spool commits again after %.1f s (%s)",
                    self.commit_failing_for_s or 0.0,
                    self.commit_error,
                )
                self.commit_error, self._commit_since = None, None
            return True
        return False

    def _cannot_commit(self, error: str, log: str) -> None:
        if error != self.commit_error:  # once per cause, not once per retry
            _LOG.error("%s", log)
        self.commit_error = error
        if self._commit_since is None:
            self._commit_since = time.monotonic()

    @property
    def commit_failing_for_s(self) -> float | None:
        """How long readings could not be committed to the spool; None while they can."""
        since = self._commit_since
        return None if since is None else time.monotonic() - since
