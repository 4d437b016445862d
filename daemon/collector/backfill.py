"""Late readings into the hourly roll-up: the collector recomputes the hours the CQs no longer do.

The continuous queries (rollup.py) recompute an hour for the last time `downsample_for`
after it starts (rollup.late_before_ms has the exact rule). Readings written after that - an
agent's outbox after an outage, the spool drained after InfluxDB was away, a bridge's
backlog - would never reach the roll-up the long-range panels read. So:

1. the writer, once InfluxDB has confirmed a batch and before the batch leaves the spool,
   hands it to `note_written`: the hours of its late points of the rolled-up measurements
   become pending, durably (late.PendingHours, in the spool's file);
2. this part's loop, once the backlog has drained (less than one batch spooled, InfluxDB
   taking writes) and an hour has had no late point for `backfill_settle_s`, runs the CQ's
   own SELECT ... INTO restricted to `time >= hour AND time < hour + 1h`, one hour and one
   measurement a statement, at most `backfill_hours_per_minute` hours in any minute. An
   hour leaves the pending set only once InfluxDB answered OK for every measurement and no
   late point came for it meanwhile; a failure keeps it and retries it after the writer's
   backoff (influx.write_backoff_*).

A statement's cost is the whole fleet's hour (tests/bench/bench_backfill.py: at 1,000
devices x 1 Hz on 2 cores, 14-43 s for battery, 5-18 s for location, 23-55 s for status,
InfluxDB using about a core meanwhile). So it has its own timeout, `backfill_timeout_s`, and
its own connections: the writer's short `timeout_s` bounds a write, never a recompute, and a
statement running for minutes holds no connection the writer needs. The timeout must be
long enough, not merely retried: InfluxDB 1.6 abandons a statement whose client left
(measured: gone within ~2 s), so a statement cut short by the client is never finished and
would fail again at every retry. Hours are not grouped into one statement: one statement
over 6 hours cost the same as six over one (measured at 20 devices), while at the design
point it would run ~3 minutes for status alone.

InfluxDB 1.x only (the API v1 with a roll-up): 2.x and 3.x have no continuous queries and
their InfluxQL has no SELECT ... INTO, so there is nothing this could run there.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleet.config.influx import InfluxSettings, duration_seconds
from fleet.daemon.collector import rollup
from fleet.daemon.collector.late import PendingHours, Taken, late_points, utc_hour
from fleet.daemon.collector.sinks import Sink, V1Sink, WriteResult
from fleet.daemon.spool import Spool, SpoolRow
from fleet.drivers.backoff import Backoff

_LOG = logging.getLogger(__name__)

# How far InfluxDB's clock may be ahead of the collector's: a point taken this close before
# its hour's last CQ run counts as late (and is recomputed once more, which is harmless).
CLOCK_MARGIN_MS = 60_000
POLL_S = 1.0
_MINUTE_S = 60.0

Query = Callable[[str], WriteResult]


@dataclass
class BackfillCounters:
    late_points: int = 0  # points written after their hour's last CQ run (writer thread)
    backfilled_hours: int = 0  # hours recomputed, InfluxDB said OK (backfill thread)
    failures: int = 0  # statements InfluxDB refused or did not answer (backfill thread)
    note_errors: int = 0  # batches whose late points could not be looked at (writer thread)
    store_errors: int = 0  # recomputed hours that could not be written down (backfill thread)
    loop_errors: int = 0  # steps that failed for another reason, a bug (backfill thread)


def _ms(duration: str) -> int:
    seconds = duration_seconds(duration)
    if seconds is None:  # the config refuses INF for these
        raise ValueError(f"{duration!r} is not a finite duration")
    return int(seconds * 1000)


def pending_key(settings: InfluxSettings) -> str:
    """The spool `meta` key of the pending hours: one set per database and policy pair."""
    return f"rollup_pending:{settings.database}/{settings.retention_policy}/{settings.downsample_policy}"


class RollupBackfill:
    def __init__(
        self,
        settings: InfluxSettings,
        spool: Spool,
        query: Query,
        *,
        backlog_drained: Callable[[], bool],
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
        poll_s: float = POLL_S,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._query = query
        self._close = close  # its own InfluxDB connections, at the end of run()
        self._drained = backlog_drained
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._poll_s = poll_s
        self._every_ms = _ms(settings.downsample_every)
        self._for_ms = _ms(settings.downsample_for)
        self._per_minute = settings.backfill_hours_per_minute
        self._backoff = Backoff(
            settings.write_backoff_initial_s, settings.write_backoff_max_s, jitter=0.5
        )
        self.pending = PendingHours(
            spool, pending_key(settings), settle_s=settings.backfill_settle_s, monotonic=monotonic
        )
        self.counters = BackfillCounters()
        self._spent: deque[tuple[float, int]] = deque()  # (monotonic, hours) of the last minute
        self._failing = False  # logged once per streak of failures
        self._note_failing = False

    @property
    def enabled(self) -> bool:
        """Whether the loop runs; with 0 hours a minute late hours are only counted."""
        return self._per_minute > 0

    # -- the writer's thread ---------------------------------------------------------------

    def note_written(self, rows: Sequence[SpoolRow]) -> None:
        """InfluxDB confirmed these rows, which are still spooled: note their late hours.

        sqlite3.Error goes to the writer, which keeps the batch and writes it again; any
        other failure is counted and logged, and the batch goes on (a roll-up hour is not
        worth holding every reading back for).
        """
        now_ms = self._clock_ms()
        try:
            before = rollup.late_before_ms(now_ms, self._every_ms, self._for_ms, CLOCK_MARGIN_MS)
            count, hours = late_points(rows, before)
        except Exception:  # noqa: BLE001 - the writer must go on draining the spool
            self.counters.note_errors += 1
            if not self._note_failing:
                _LOG.exception("could not look for late points in a written batch")
            self._note_failing = True
            return
        self._note_failing = False
        if not count:
            return
        was_empty = not len(self.pending)
        fresh = self.pending.note(hours)
        self.counters.late_points += count
        if fresh and was_empty:
            _LOG.info(
                "readings older than the roll-up's window (downsample_for %s) were written: "
                "their hours will be recomputed once the backlog is written",
                self._settings.downsample_for,
            )
        _LOG.debug("%d late points; %d new pending hours", count, fresh)

    # -- its own thread --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        failing = False
        try:
            while not stop.is_set():
                try:
                    delay = self.step()
                except Exception:  # noqa: BLE001 - a roll-up hour is not worth the collector
                    # (the supervisor stops the whole collector after a few crashes in a row)
                    self.counters.loop_errors += 1
                    if not failing:
                        _LOG.exception("roll-up backfill failed; trying again")
                    failing = True
                    delay = self._settings.write_backoff_max_s
                else:
                    failing = False
                stop.wait(delay)
        finally:
            self._spool.close()  # this thread's connection
            self._close()

    def step(self) -> float:
        """At most one statement; returns how long to wait before the next step."""
        if not len(self.pending) or not self._drained():
            return self._poll_s
        now = self._monotonic()
        while self._spent and now - self._spent[0][0] >= _MINUTE_S:
            self._spent.popleft()
        allowance = self._per_minute - sum(n for _, n in self._spent)
        if allowance <= 0:
            return max(0.0, self._spent[0][0] + _MINUTE_S - now)
        due = self.pending.due(allowance)
        if not due:
            return self._poll_s
        run = due[:1]
        self._spent.append((now, len(run)))
        return self._recompute(run)

    def _recompute(self, run: list[Taken]) -> float:
        s = self._settings
        start, end = run[0].hour, run[-1].hour + rollup.HOUR_MS
        for measurement in rollup.measurements():
            # One statement a request: InfluxDB 1.6 reports an error of the first of several
            # statements as "not executed", which would hide what went wrong.
            statement = rollup.backfill_statement(
                s.database, s.retention_policy, s.downsample_policy, measurement, start, end
            )
            result = self._query(statement)
            if not result.ok:
                break
        else:
            return self._recomputed(run)
        self.counters.failures += 1
        wait = self.pending.failed(run, self._backoff)
        what = _failure(result, s.backfill_timeout_s)
        log = _LOG.debug if self._failing else _LOG.warning
        log(
            "roll-up of %s (%d h) not recomputed: InfluxDB %s (%.300s); "
            "kept pending, next try in %.1f s",
            utc_hour(start),
            len(run),
            what,
            result.body,
            wait,
        )
        self._failing = True
        return 0.0  # other hours may be due; each failed one waits its own backoff

    def _recomputed(self, run: list[Taken]) -> float:
        if self._failing:
            _LOG.info("InfluxDB recomputes the roll-up again")
        self._failing = False
        try:
            self.pending.done(run)
        except sqlite3.Error as exc:
            # They stay pending in memory and on disk: recomputed once more, harmlessly.
            self.counters.store_errors += 1
            _LOG.error("could not record recomputed roll-up hours in the spool: %s", exc)
            return self._poll_s
        self.counters.backfilled_hours += len(run)
        left = len(self.pending)
        _LOG.debug(
            "roll-up recomputed for %s (%d h); %d h pending", utc_hour(run[0].hour), len(run), left
        )
        if not left:
            _LOG.info(
                "roll-up complete again: %d hours recomputed for late readings since the start",
                self.counters.backfilled_hours,
            )
        return 0.0

    def fields(self) -> dict[str, int]:
        """The `pipeline` fields."""
        c = self.counters
        return {
            "rollup_late_points": c.late_points,
            "rollup_late_hours": len(self.pending),
            "rollup_backfilled_hours": c.backfilled_hours,
            "rollup_backfill_failures": c.failures,
            "rollup_errors": c.note_errors + c.store_errors + c.loop_errors,
        }


def _failure(result: WriteResult, timeout_s: float) -> str:
    """What went wrong, worded for the log; a timeout names the key that sets it."""
    if result.status != 0:
        return f"answered {result.status}"
    if result.body.startswith("ReadTimeoutError"):  # sinks.V1Sink's words for urllib3's
        # Retrying does not help: InfluxDB dropped the statement when we left.
        return (
            f"did not finish within influx.backfill_timeout_s ({timeout_s:g} s; "
            "a statement reads the whole fleet's hour - raise it)"
        )
    return "unreachable"


def make_backfill(
    settings: InfluxSettings,
    spool: Spool,
    sink: Sink,
    *,
    backlog_drained: Callable[[], bool],
) -> RollupBackfill | None:
    """The part, where there is a roll-up this collector can recompute: InfluxDB 1.x.

    `sink` is the writer's; the part gets a sink of its own with `backfill_timeout_s`, so
    neither side's timeout or connections bound the other's."""
    if settings.api != "v1" or not settings.downsample_policy or not isinstance(sink, V1Sink):
        return None
    own = V1Sink(settings.model_copy(update={"timeout_s": settings.backfill_timeout_s}))
    return RollupBackfill(
        settings, spool, own.query, backlog_drained=backlog_drained, close=own.close
    )
