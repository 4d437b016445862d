"""The roll-up's recompute against a real InfluxDB 1.6: a statement that runs longer than the
writes' timeout still completes on its own timeout (influx.backfill_timeout_s) and the hour
leaves the pending set; an InfluxDB that is down is counted, retried and caught up with.

The slow statement is slow honestly: enough raw points that its SELECT ... INTO takes a
measurable time here, and the writes' timeout set to a quarter of the quickest of two timed
runs of it - so the premise holds on any machine, fast or loaded, without a sleep."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector import rollup
from fleet.daemon.collector.backfill import RollupBackfill, make_backfill
from fleet.daemon.collector.sinks import V1Sink
from fleet.daemon.spool import Spool
from tests.harness.servers import InfluxServer
from tests.harness.waiting import wait_until

H = rollup.HOUR_MS
DEVICES = 40
SECONDS = 1800  # status readings per device in the hour: 72,000 points


def _late_hour() -> int:
    """An hour 30 h ago: long past its CQs' last run, so only the recompute fills it."""
    return rollup.hour_of(int(time.time() * 1000)) - 30 * H


def _status_lines(hour: int, devices: int, seconds: int) -> list[str]:
    """Status points as the collector writes them (schema.reading_lines' field set)."""
    lines = []
    for d in range(devices):
        tags = f"device=sw-{d:04d},kind=segway,site=allingtown"
        for s in range(seconds):
            lines.append(
                f'status,{tags} error_code=0i,firmware="1.3.9",locked=false,'
                f"odometer_km={1000 + s * 0.002:.3f},range_km={30 - s * 0.001:.3f},"
                f'rssi_dbm=-61i,seq={s}i,speed_kmh={s % 20}.5,state="riding" {hour + s * 1000 + d}'
            )
    return lines


def _settings(influx: InfluxServer, db: str, **changes: float) -> InfluxSettings:
    return InfluxSettings.model_validate(
        {"url": influx.url, "database": db, "backfill_settle_s": 0.0, **changes}
    )


def _load(influx: InfluxServer, settings: InfluxSettings, lines: list[str]) -> None:
    boot = V1Sink(settings).bootstrap()  # the raw policy, rp_1h and the CQs, as at a start
    assert boot.ok, boot
    for i in range(0, len(lines), 10_000):
        influx.write(settings.database, "\n".join(lines[i : i + 10_000]), rp="raw")


def _samples(influx: InfluxServer, db: str, hour: int) -> dict[str, int]:
    rows = influx.rows(
        f'SELECT "samples" FROM "rp_1h"."status" WHERE time = {hour}ms GROUP BY "device"', db
    )
    return {r["device"]: r["samples"] for r in rows}


def _spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.sqlite", max_bytes=1 << 24, fsync=False)


def _part(settings: InfluxSettings, spool: Spool) -> RollupBackfill:
    """The part as the collector builds it: from the writer's sink and the settings."""
    backfill = make_backfill(settings, spool, V1Sink(settings), backlog_drained=lambda: True)
    assert backfill is not None
    return backfill


def test_a_statement_longer_than_the_write_timeout_completes_and_the_hour_leaves(
    tmp_path: Path, influx: InfluxServer, tmp_db: str
) -> None:
    hour = _late_hour()
    calm = _settings(influx, tmp_db)
    _load(influx, calm, _status_lines(hour, DEVICES, SECONDS))
    # Timed into a policy of its own: the same statement and cost, the roll-up left empty.
    influx.post_query(f'CREATE RETENTION POLICY "timing" ON "{tmp_db}" DURATION INF REPLICATION 1')
    timing = rollup.backfill_statement(tmp_db, "raw", "timing", "status", hour, hour + H)
    timed = []
    for _ in range(2):
        began = time.monotonic()
        assert V1Sink(calm).query(timing).ok
        timed.append(time.monotonic() - began)
    assert _samples(influx, tmp_db, hour) == {}

    # The writes' timeout: a quarter of the statement; the recompute's: the default.
    settings = _settings(influx, tmp_db, timeout_s=min(timed) / 4)
    assert settings.backfill_timeout_s == 300.0
    spool = _spool(tmp_path)
    try:
        backfill = _part(settings, spool)
        backfill.pending.note([hour])
        began = time.monotonic()
        while len(backfill.pending) and not backfill.counters.failures:
            backfill.step()
        took = time.monotonic() - began
        assert backfill.counters.failures == 0
        assert backfill.counters.backfilled_hours == 1
        assert backfill.pending.hours() == []
        assert took > settings.timeout_s  # the premise: longer than a write may take
    finally:
        spool.close()
    assert _samples(influx, tmp_db, hour) == {f"sw-{d:04d}": SECONDS for d in range(DEVICES)}

    # The same statement on the writer's timeout - what the recompute used before - fails.
    statement = rollup.backfill_statement(tmp_db, "raw", "rp_1h", "status", hour, hour + H)
    cut = V1Sink(settings).query(statement)
    assert (cut.status, cut.body.split(":")[0]) == (0, "ReadTimeoutError")


def test_an_influxdb_that_is_down_is_counted_and_retried_until_it_is_back(
    tmp_path: Path,
    make_influx: Callable[..., InfluxServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_influx()
    hour = _late_hour()
    settings = _settings(server, "fleet", write_backoff_initial_s=0.05, write_backoff_max_s=0.2)
    _load(server, settings, _status_lines(hour, 3, 60))
    spool = _spool(tmp_path)
    try:
        backfill = _part(settings, spool)
        backfill.pending.note([hour])
        server.stop()
        with caplog.at_level(logging.WARNING):
            wait_until(
                lambda: backfill.step() >= 0 and backfill.counters.failures >= 3,
                timeout=30,
                interval=0.05,
                message="the recompute failed, and failed again at its retries",
            )
        assert backfill.pending.hours() == [hour]
        assert backfill.counters.backfilled_hours == 0
        assert backfill.fields()["rollup_backfill_failures"] >= 3
        assert "InfluxDB unreachable" in caplog.text
        assert "kept pending" in caplog.text

        server.start()  # same port and data
        wait_until(
            lambda: backfill.step() >= 0 and not len(backfill.pending),
            timeout=60,
            interval=0.05,
            message="the hour was recomputed once InfluxDB was back",
        )
        assert backfill.counters.backfilled_hours == 1
    finally:
        spool.close()
    assert _samples(server, "fleet", hour) == {f"sw-{d:04d}": 60 for d in range(3)}
