"""The stats reporter outlives a bad report: logged, counted, reported again next time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.collector.sinks import V1Sink
from fleet.daemon.collector.stats import SPOOL_TOPIC, StatsReporter
from fleet.daemon.collector.writer import Writer, write_backoff
from fleet.daemon.spool import Entry, SeqRow, Spool
from tests.daemon.collector.test_ingest_isolation import decoder
from tests.harness.waiting import wait_until


class FlakySpool(Spool):
    """A real spool whose first `failures` commits fail like a locked or full disk."""

    failures = 0

    def append(self, entries: Sequence[Entry], seq: Sequence[SeqRow] = ()) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        super().append(entries, seq)


def reporter(spool: Spool, extra_fields: Any = dict) -> StatsReporter:
    ingest = Ingest(
        decoder=decoder(),
        spool=spool,
        publish=lambda topic, payload: None,
        ack=lambda batch: None,
        deadletter_topic=lambda topic: "fleet/v1/allingtown/deadletter",
        on_spooled=lambda: None,
        batch_max=10,
    )
    writer = Writer(
        spool,
        V1Sink(InfluxSettings(url="http://127.0.0.1:9")),
        batch_size=10,
        flush_interval_s=1,
        backoff=write_backoff(0.1, 1),
        on_rejected=lambda lines, reason: None,
        oldest_allowed_ms=lambda: None,
    )
    return StatsReporter(
        site="allingtown",
        instance="c1",
        ingest=ingest,
        writer=writer,
        spool=spool,
        interval_s=0.05,
        extra_fields=extra_fields,
    )


def pipeline_lines(spool: Spool) -> list[str]:
    return [r.lines for r in spool.head(1000) if r.topic == SPOOL_TOPIC]


def test_failing_reports_do_not_end_the_stats_thread(tmp_path):
    spool = FlakySpool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    spool.failures = 3
    stats = reporter(spool)
    stop = threading.Event()
    thread = threading.Thread(target=stats.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: pipeline_lines(spool), message="a report after the failures")
    finally:
        stop.set()
        thread.join(10)
    assert stats.failures == 3
    assert "stats_failures=3i" in pipeline_lines(spool)[0]


def test_a_part_whose_counters_fail_costs_only_its_own_fields(tmp_path):
    def broken() -> dict[str, int]:
        raise KeyError("alerts")

    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    stats = reporter(spool, broken)
    assert stats.try_report()
    (line,) = pipeline_lines(spool)
    assert "received=0i" in line
    assert stats.failures == 1
