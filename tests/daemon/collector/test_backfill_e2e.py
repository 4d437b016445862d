"""The roll-up backfill with the real collector, Mosquitto and InfluxDB: the pending hours
survive a restart, an InfluxDB that refuses the recompute keeps them pending until it takes
it, and the counters reach `pipeline`. (The Grafana panels over a late day:
tests/grafana/test_late_day.py.)"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.collector.backfill import RollupBackfill, pending_key
from fleet.daemon.spool import Spool
from tests.daemon.collector.late_day import H, LateDay, late_day, publish, with_influx
from tests.harness.fleet import publisher, running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until


def _rollup(influx: InfluxServer, db: str, day: LateDay) -> dict[str, dict[tuple[str, int], Any]]:
    """What the roll-up holds of that day: per measurement, (device, hour) -> samples."""
    span = f"time >= {day.start_ms - day.start_ms % H}ms AND time <= {day.end_ms}ms"
    got: dict[str, dict[tuple[str, int], Any]] = {}
    for m in ("battery", "location", "status"):
        rows = influx.rows(
            f'SELECT "samples", "pct" FROM "rp_1h"."{m}" WHERE {span} GROUP BY *', db
        )
        got[m] = {(r["device"], r["time"]): r for r in rows}
    return got


def _check_rollup(influx: InfluxServer, db: str, day: LateDay) -> None:
    expected = day.per_device_hour()
    got = _rollup(influx, db, day)
    for m, rows in got.items():
        assert {k: r["samples"] for k, r in rows.items()} == {
            k: len(v) for k, v in expected.items()
        }, m
    for key, readings in expected.items():
        mean = sum(r.pct for r in readings) / len(readings)
        assert got["battery"][key]["pct"] == pytest.approx(mean), key


def _pipeline(influx: InfluxServer, db: str, field: str) -> Any:
    rows = influx.rows(f'SELECT last("{field}") FROM "pipeline" WHERE "device" = \'\'', db)
    return rows[0]["last"] if rows else None


def _wait_written(collector: Any, day: LateDay) -> RollupBackfill:
    backfill: RollupBackfill | None = collector.backfill
    assert backfill is not None
    wait_until(
        lambda: (
            collector.ingest.counters.accepted >= len(day.readings)
            and collector.spool.depth().rows == 0
            and backfill.counters.late_points >= day.points
        ),
        timeout=60,
        interval=0.2,
        message="the collector wrote the late day",
    )
    return backfill


def test_pending_hours_survive_a_restart_and_are_recomputed_after_it(
    tmp_path: Path,
    influx: InfluxServer,
    tmp_db: str,
    make_broker: Callable[..., MosquittoServer],
) -> None:
    broker = make_broker()
    base = settings_from(write_config(tmp_path, broker=broker, influx=influx, database=tmp_db))
    day = late_day(int(time.time() * 1000))
    hours = sorted(day.hours)

    # First run: an hour settles only after an hour, so the collector stops before it acts.
    waiting = with_influx(base, backfill_settle_s=3600.0)
    with running_collector(waiting, broker) as collector:
        with publisher(waiting, "late-day") as link:
            publish(link, day)
        backfill = _wait_written(collector, day)
        assert backfill.pending.hours() == hours
        # Both from one report: a report written while the last late points were still being
        # counted already shows every hour but fewer points (the collector's counters were
        # checked complete above; the report catches up at its next interval).
        wait_until(
            lambda: (
                _pipeline(influx, tmp_db, "rollup_late_hours") == len(hours)
                and _pipeline(influx, tmp_db, "rollup_late_points") == day.points
            ),
            timeout=20,
            message="pipeline shows the pending hours and their late points",
        )
    assert all(not rows for rows in _rollup(influx, tmp_db, day).values())
    spool = Spool(base.spool.path, max_bytes=base.spool.max_bytes, fsync=False)
    try:
        assert json.loads(spool.get_meta(pending_key(base.influx)) or "") == hours
    finally:
        spool.close()

    # Second run, same spool: the hours are recomputed without anything new arriving.
    now = with_influx(base, backfill_settle_s=0.0, backfill_hours_per_minute=600)
    with running_collector(now, broker) as collector:
        again = collector.backfill
        assert again is not None
        wait_until(
            lambda: not len(again.pending),
            timeout=60,
            message="the pending hours were recomputed",
        )
        assert again.counters.backfilled_hours == len(hours)
        assert again.counters.late_points == 0  # nothing was written late this time
        wait_until(  # both from one report, as above
            lambda: (
                _pipeline(influx, tmp_db, "rollup_backfilled_hours") == len(hours)
                and _pipeline(influx, tmp_db, "rollup_late_hours") == 0
            ),
            timeout=20,
            message="pipeline counts the recomputed hours, none pending",
        )
    _check_rollup(influx, tmp_db, day)


class SeriesCappedInflux(InfluxServer):
    """InfluxDB that refuses any SELECT over more than one series while `capped`: the
    recompute (three devices) fails with InfluxDB's own error, writes go on."""

    capped = True

    def _config(self) -> str:
        cap = "\n[coordinator]\n  max-select-series = 1\n" if self.capped else ""
        return super()._config() + cap


@pytest.fixture
def capped_influx(tmp_path: Path) -> Iterator[SeriesCappedInflux]:
    server = SeriesCappedInflux(tmp_path / "influxd-capped").start()
    yield server
    server.stop()


def test_an_influxdb_error_keeps_the_hours_pending_until_it_recomputes_them(
    tmp_path: Path,
    capped_influx: SeriesCappedInflux,
    make_broker: Callable[..., MosquittoServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = make_broker()
    config = write_config(tmp_path, broker=broker, influx=capped_influx, database="fleet")
    settings = with_influx(
        settings_from(config), backfill_settle_s=0.0, backfill_hours_per_minute=600
    )
    day = late_day(int(time.time() * 1000))
    hours = sorted(day.hours)
    with caplog.at_level(logging.WARNING), running_collector(settings, broker) as collector:
        with publisher(settings, "late-day") as link:
            publish(link, day)
        backfill = _wait_written(collector, day)
        wait_until(
            lambda: backfill.counters.failures >= 2,
            timeout=30,
            message="InfluxDB refused the recompute (more than once: it was retried)",
        )
        assert backfill.pending.hours() == hours
        assert backfill.counters.backfilled_hours == 0
        assert "max-select-series limit exceeded" in caplog.text
        assert "kept pending" in caplog.text

        capped_influx.capped = False
        capped_influx.restart()  # same port and data, without the cap
        wait_until(
            lambda: not len(backfill.pending),
            timeout=60,
            message="the hours were recomputed once InfluxDB took the statements",
        )
        assert backfill.counters.backfilled_hours == len(hours)
        wait_until(
            lambda: (
                (_pipeline(capped_influx, "fleet", "rollup_backfilled_hours") or 0) == len(hours)
            ),
            timeout=20,
            message="pipeline counts the recomputed hours",
        )
        assert _pipeline(capped_influx, "fleet", "rollup_backfill_failures") >= 2
    _check_rollup(capped_influx, "fleet", day)
