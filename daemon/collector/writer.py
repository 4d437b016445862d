"""Drains the spool into InfluxDB.

A batch leaves the spool only when InfluxDB took it (2xx) or refused it for
good (400/422: its refused lines go to the dead letters and are never
retried; the rest is written again, since only a 2xx says what the server
stored - `written` counts nothing else). Everything else - unreachable server,
timeouts, 429, 5xx, bad credentials - keeps the batch and retries it with
exponential backoff and jitter, honouring Retry-After.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.daemon import liveness
from fleet.daemon.collector.rejections import error_text, rejected_lines
from fleet.daemon.collector.sinks import Sink, WriteResult
from fleet.daemon.spool import Spool, SpoolRow
from fleet.drivers.backoff import Backoff

_LOG = logging.getLogger(__name__)

# (source topic, rejected line, InfluxDB's reason)
# The refused lines of one response, (source topic, line) each, and the server's reason:
# one call, so the dead-letter store commits them in one transaction.
RejectedLineSink = Callable[[list[tuple[str, str]], str], None]


@dataclass
class WriterCounters:
    """Owned by the writer thread; the stats reporter only reads them."""

    written_points: int = 0
    written_batches: int = 0
    retries: int = 0
    rejected_points: int = 0
    # Lines of a refused batch written again to learn whether the server took them.
    resent_points: int = 0
    dead_letter_failures: int = 0
    write_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)

    def take_timings(self) -> tuple[list[float], list[float]]:
        write_ms, self.write_ms = self.write_ms, []
        lag_ms, self.lag_ms = self.lag_ms, []
        return write_ms, lag_ms


def write_backoff(initial_s: float, max_s: float) -> Backoff:
    """The writer's retry pauses: "equal jitter", never less than half the step,
    so a recovering server is not hammered by every collector at once."""
    return Backoff(initial_s, max_s, jitter=0.5)


class Writer:
    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        batch_size: int,
        flush_interval_s: float,
        backoff: Backoff,
        on_rejected: RejectedLineSink,
        oldest_allowed_ms: Callable[[], int | None],
        shutdown_grace_s: float = 5.0,
        on_written: Callable[[list[SpoolRow]], None] | None = None,
    ) -> None:
        self._spool = spool
        self._sink = sink
        self._batch_size = batch_size
        self._cap = batch_size
        self._flush_interval_s = flush_interval_s
        self._backoff = backoff
        self._on_rejected = on_rejected
        self._oldest_allowed_ms = oldest_allowed_ms
        # Rows InfluxDB confirmed, before they leave the spool (the roll-up's late hours,
        # backfill.py): its sqlite3.Error keeps the batch, which is then written again.
        self._on_written = on_written
        self._shutdown_grace_s = shutdown_grace_s
        self._wake = threading.Event()
        self._needs_bootstrap = True
        self._retry: tuple[list[SpoolRow], bytes] | None = None
        self._failures = 0
        self._failing_since: float | None = None
        self.counters = WriterCounters()
        self._spool_failing = False  # logged once per episode of spool errors

    @property
    def failing_for_s(self) -> float | None:
        """How long InfluxDB has been refusing or unreachable; None while writes succeed."""
        since = self._failing_since
        return None if since is None else time.monotonic() - since

    def notify(self) -> None:
        """New points were spooled; the writer decides whether to write now."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                liveness.beat()  # the watchdog's proof of life (daemon/liveness.py)
                wait = self._due_in()
                if wait <= 0:
                    try:
                        delay = self._write_batch()
                    except sqlite3.Error as exc:
                        delay = self._spool_failed(exc)
                    if delay is not None:
                        stop.wait(delay)
                    continue
                self._wake.wait(wait)
                self._wake.clear()
            self._final_flush()
        finally:
            self._spool.close()

    def _spool_failed(self, exc: sqlite3.Error) -> float:
        """The spool refused (a full disk: removing rows needs WAL space too). The batch
        stays; if InfluxDB took it already, writing it again stores the same points."""
        if not self._spool_failing:
            _LOG.error("spool failed under the writer (%s); retrying every 1 s", exc)
        self._spool_failing = True
        return 1.0

    def _due_in(self) -> float:
        """Seconds until the next write is due: a full batch now, else when the oldest
        spooled point has waited `flush_interval_s` (which bounds its latency)."""
        pending = self._spool.depth().points
        if pending >= self._batch_size:
            return 0.0
        oldest = self._spool.oldest_ms() if pending else None
        if oldest is None:
            return self._flush_interval_s
        return self._flush_interval_s - (time.time() * 1000 - oldest) / 1000

    def _final_flush(self) -> None:
        """On shutdown write what can be written quickly; the rest stays spooled."""
        deadline = time.monotonic() + self._shutdown_grace_s
        while self._spool.depth().rows and time.monotonic() < deadline:
            if self._write_batch() is not None:
                break
        depth = self._spool.depth()
        if depth.rows:
            _LOG.info("%d points stay in the spool for the next start", depth.points)

    def _write_batch(self) -> float | None:
        """Write one batch from the head; None on progress, else the delay before retrying."""
        if self._needs_bootstrap:
            result = self._sink.bootstrap()
            if result.status == 0 or result.status >= 500 or result.status == 429:
                return self._failed(result)
            if not result.ok:
                _LOG.warning(
                    "could not create the InfluxDB database: %s (status %d)",
                    result.body,
                    result.status,
                )
            self._needs_bootstrap = False
        # A batch that failed is retried as it was (same bytes, read once), not re-read
        # from the spool on every attempt of a long outage.
        if self._retry is not None and len(self._retry[0]) <= self._cap:
            rows, body = self._retry
        else:
            rows = self._spool.head(self._cap)
            if not rows:
                return None
            body = "\n".join(row.lines for row in rows).encode()
        self._retry = None
        started = time.monotonic()
        result = self._sink.write(body)
        elapsed_ms = (time.monotonic() - started) * 1000
        if result.ok:
            self._succeeded(rows, elapsed_ms)
            return None
        if result.status in (400, 422):
            self._partial_write(rows, result)
            return None
        if result.status == 413:
            return self._too_large(rows, result)
        if result.status == 404 or "retention policy not found" in result.body:
            # The database or policy vanished under us (a reset server): recreate it.
            self._needs_bootstrap = True
        self._retry = (rows, body)
        return self._failed(result)

    def _succeeded(self, rows: list[SpoolRow], elapsed_ms: float) -> None:
        if self._on_written is not None:
            self._on_written(rows)
        self._spool.remove(rows)
        if self._spool_failing:
            _LOG.warning("spool works again under the writer")
            self._spool_failing = False
        points = sum(r.n for r in rows)
        now_ms = time.time() * 1000
        c = self.counters
        c.written_points += points
        c.written_batches += 1
        c.write_ms.append(elapsed_ms)
        c.lag_ms.append(now_ms - rows[0].at_ms)
        self._failures = 0
        self._cap = self._batch_size
        if self._failing_since is not None:
            _LOG.info(
                "InfluxDB accepts writes again after %.0f s; draining %d spooled points",
                time.monotonic() - self._failing_since,
                self._spool.depth().points,
            )
            self._failing_since = None

    def _failed(self, result: WriteResult) -> float:
        self.counters.retries += 1
        self._failures += 1
        delay = self._backoff.delay(self._failures, retry_after=result.retry_after)
        what = "unreachable" if result.status == 0 else f"answered {result.status}"
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            _LOG.warning(
                "InfluxDB %s (%s); readings stay in the spool (%d points), retrying in %.1f s",
                what,
                result.body[:200],
                self._spool.depth().points,
                delay,
            )
        else:
            _LOG.debug("InfluxDB still %s; retry %d in %.1f s", what, self._failures, delay)
        return delay

    def _too_large(self, rows: list[SpoolRow], result: WriteResult) -> float | None:
        if len(rows) > 1:
            self._cap = max(1, sum(r.n for r in rows) // 2)
            return None
        self._partial_write(rows, result)
        return None

    def _partial_write(self, rows: list[SpoolRow], result: WriteResult) -> None:
        """A batch InfluxDB refused in whole or in part (400/422, or 413 for one row).

        Which lines the server wrote is not something it says: its `dropped=N` can be
        short (InfluxDB 1.6 reports one reason and, at times, fewer drops than it made),
        2.x refuses a whole batch for one unparsable line, 1.x writes the rest. So
        nothing of a refused batch is counted as written here. The lines the server
        named go to the dead letters; the others stay at the head of the spool and
        go again, which is harmless (a point written twice is one point) and turns
        the server's 204 into the confirmation. Each round takes at least one line
        out, so it ends.
        """
        located = [(row, line) for row in rows for line in row.lines.split("\n")]
        bad = set(
            rejected_lines(
                result.body,
                [line for _, line in located],
                oldest_allowed_ms=self._oldest_allowed_ms(),
            )
        )
        reason = error_text(result.body)
        _LOG.warning(
            "InfluxDB refused %d of %d points (status %d): %s",
            len(bad),
            len(located),
            result.status,
            reason[:300],
        )
        kept: dict[int, list[str]] = {row.id: [] for row in rows}
        refused: list[tuple[str, str]] = []
        for index, (row, line) in enumerate(located):
            if index in bad:
                refused.append((row.topic, line))
            else:
                kept[row.id].append(line)
        self._reject(refused, reason)
        self.counters.rejected_points += len(bad)
        if len(bad) == len(located):
            self._spool.remove(rows)
        else:
            changed = [(row, kept[row.id]) for row in rows if len(kept[row.id]) != row.n]
            self._spool.replace_lines(changed)
            self.counters.resent_points += len(located) - len(bad)
        self._failures = 0

    def _reject(self, refused: list[tuple[str, str]], reason: str) -> None:
        """The refused lines to the dead letters; a failure there is not the batch's."""
        if not refused:
            return
        try:
            self._on_rejected(refused, reason)
        except Exception:  # noqa: BLE001 - the writer must go on draining the spool
            self.counters.dead_letter_failures += 1
            _LOG.exception("could not dead-letter %d lines InfluxDB refused", len(refused))
