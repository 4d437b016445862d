"""The roll-up backfill's rules without servers: hour buckets, when the CQs last recompute an
hour, which points are late, the statement (the CQ's own SELECT), the durable pending set, and
the loop's grouping, rate limit and retries (a fake InfluxDB answers, fake clocks turn)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector import rollup
from fleet.daemon.collector.backfill import RollupBackfill, pending_key
from fleet.daemon.collector.late import PendingHours, Taken, late_points
from fleet.daemon.collector.sinks import WriteResult
from fleet.daemon.spool import Spool, SpoolRow
from fleet.drivers.backoff import Backoff
from tests.harness.waiting import wait_until

H = rollup.HOUR_MS
MIN = 60_000
# 2026-03-10 00:00 UTC: a day boundary, so the clock readings below are easy to follow.
DAY = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp() * 1000)


def at(hh: int, mm: int = 0, ss: int = 0) -> int:
    return DAY + hh * H + mm * MIN + ss * 1000


# -- hours and the CQ schedule ----------------------------------------------------------


def test_a_point_falls_in_the_utc_hour_that_holds_it() -> None:
    assert rollup.hour_of(at(9)) == at(9)
    assert rollup.hour_of(at(9, 59, 59) + 999) == at(9)
    assert rollup.hour_of(at(10)) == at(10)
    assert rollup.hour_of(at(10) - 1) == at(9)


def _go_truncate_ms(t_ms: int, every_ms: int) -> int:
    """Go's Time.Truncate: a multiple of `every` counted from 0001-01-01 UTC."""
    zero = datetime(1, 1, 1, tzinfo=UTC)
    since = datetime.fromtimestamp(t_ms / 1000, UTC) - zero
    step = timedelta(milliseconds=every_ms)
    return int((zero + since // step * step).timestamp() * 1000)


def test_the_last_cq_run_over_an_hour_is_for_after_it_on_the_every_grid() -> None:
    # EVERY 10m FOR 2h: the 09:00 hour is recomputed at 11:00 for the last time.
    assert rollup.last_cq_run_ms(at(9), 10 * MIN, 2 * H) == at(11)
    assert rollup.last_cq_run_ms(at(9), 10 * MIN, 90 * MIN + 2 * H) == at(12, 30)
    # EVERY 7m does not divide a day: Go's grid starts in year 1, not at the Unix epoch.
    for hour in (at(0), at(9), at(23)):
        got = rollup.last_cq_run_ms(hour, 7 * MIN, 2 * H)
        assert got == _go_truncate_ms(hour + 2 * H, 7 * MIN)
        assert hour + 2 * H - 7 * MIN < got <= hour + 2 * H


@pytest.mark.parametrize(
    ("now", "late_before"),
    [
        (at(10, 55), at(9)),  # hour 8 had its last run at 10:00; hour 9 gets one at 11:00
        (at(10, 58, 59), at(9)),  # InfluxDB's clock may be a minute ahead: still in time
        (at(10, 59), at(10)),  # within the margin of 11:00: hour 9 may have had its last run
        (at(11, 30), at(10)),
        (at(11, 0), at(10)),
    ],
)
def test_late_means_the_hours_last_cq_run_is_not_still_to_come(now: int, late_before: int) -> None:
    assert rollup.late_before_ms(now, 10 * MIN, 2 * H, MIN) == late_before


@given(
    now=st.integers(DAY - 400 * 86_400_000, DAY + 400 * 86_400_000),
    every_min=st.integers(1, 180),
    for_h=st.integers(1, 48),
    margin_s=st.integers(0, 600),
)
def test_late_before_splits_the_hours_exactly(
    now: int, every_min: int, for_h: int, margin_s: int
) -> None:
    every, lookback, margin = every_min * MIN, for_h * H, margin_s * 1000
    before = rollup.late_before_ms(now, every, lookback, margin)
    assert before % H == 0
    assert rollup.last_cq_run_ms(before - H, every, lookback) <= now + margin
    assert rollup.last_cq_run_ms(before, every, lookback) > now + margin


# -- the statement ----------------------------------------------------------------------


@pytest.mark.parametrize("measurement", rollup.measurements())
def test_the_backfill_runs_the_cqs_own_select_for_its_hours(measurement: str) -> None:
    cqs = rollup.continuous_queries("fleet", "raw", "rp_1h", "10m", "2h")
    (cq,) = [q for q in cqs if q.name == rollup.cq_name(measurement, "rp_1h")]
    body = cq.statement.split(" BEGIN ", 1)[1].removesuffix(" END")
    statement = rollup.backfill_statement("fleet", "raw", "rp_1h", measurement, at(9), at(12))
    where = f" WHERE time >= {at(9)}ms AND time < {at(12)}ms GROUP BY "
    assert statement == body.replace(" GROUP BY ", where)
    assert f'INTO "fleet"."rp_1h"."{measurement}" FROM "fleet"."raw"."{measurement}"' in statement


# -- late points in a written batch -----------------------------------------------------


def _row(i: int, *lines: str) -> SpoolRow:
    return SpoolRow(
        i, 0, "fleet/v1/allingtown/segway/sw-01/telemetry", len(lines), "\n".join(lines)
    )


def _reading(i: int, ts: int) -> SpoolRow:
    tags = "device=sw-01,kind=segway,site=allingtown"
    return _row(
        i,
        f"battery,{tags} pct=80.5,seq={i}i {ts}",
        f"location,{tags} lat=41.2,lon=-72.9,seq={i}i {ts}",
        f'status,{tags} seq={i}i,state="riding" {ts}',
    )


def test_a_batch_of_live_readings_has_no_late_point() -> None:
    rows = [_reading(i, at(10, 55) + i) for i in range(50)]
    assert late_points(rows, at(9)) == (0, set())
    assert late_points([], at(9)) == (0, set())


def test_late_points_are_counted_with_their_hours_and_only_for_rolled_up_measurements() -> None:
    rows = [
        _reading(1, at(10, 55)),  # live
        _reading(2, at(7, 30)),  # late: 3 points in hour 7
        _row(3, f"pipeline,instance=c,site=allingtown received=5i {at(7, 31)}"),  # not rolled up
        _row(4, f'alert,device=sw-01,rule=offline state="firing" {at(6, 10)}'),
        _row(5, f"location,device=hh-02,kind=handheld,site=a lat=41.2,lon=-72.9 {at(8, 59)}"),
        _reading(6, at(9, 0)),  # the first hour still to come
        _row(7, f"battery pct=1 {at(5)}"),  # no tags at all: still the battery measurement
    ]
    assert late_points(rows, at(9)) == (5, {at(5), at(7), at(8)})


def test_a_stamp_that_is_not_13_digits_is_read_line_by_line() -> None:
    old = 999_999_999_999  # 2001-09-09: 12 digits, its last 13 characters hold the space
    rows = [_reading(1, at(10, 55)), _row(2, f"battery,device=d pct=1 {old}")]
    assert late_points(rows, at(9)) == (1, {rollup.hour_of(old)})
    assert late_points([_row(3, "battery,device=d pct=1 x")], at(9)) == (0, set())


# -- the pending hours, durable in the spool's file -------------------------------------


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20, fsync=False)


def test_pending_hours_survive_a_restart(tmp_path: Path, spool: Spool) -> None:
    pending = PendingHours(spool, "k", settle_s=0)
    assert pending.note([at(7), at(5)]) == 2
    assert pending.note([at(7), at(6)]) == 1
    spool.close()
    again = PendingHours(
        Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20, fsync=False), "k", settle_s=0
    )
    assert again.hours() == [at(5), at(6), at(7)]


def test_an_hour_with_late_points_during_its_recompute_stays_pending(spool: Spool) -> None:
    pending = PendingHours(spool, "k", settle_s=0)
    pending.note([at(5), at(6)])
    taken = pending.due(10)
    assert taken == [Taken(at(5), 0), Taken(at(6), 0)]
    pending.note([at(6)])  # written while InfluxDB was recomputing
    pending.done(taken)
    assert pending.hours() == [at(6)]
    assert json.loads(spool.get_meta("k") or "") == [at(6)]


def test_an_hour_settles_before_it_is_due_and_a_failure_waits_its_backoff(spool: Spool) -> None:
    clock = Clock()
    pending = PendingHours(spool, "k", settle_s=30, monotonic=clock)
    pending.note([at(5)])
    clock.now += 29
    assert pending.due(10) == []
    clock.now += 1
    (taken,) = pending.due(10)
    wait = pending.failed([taken], Backoff(4.0, 60.0))
    assert wait == 4.0
    assert pending.due(10) == []
    clock.now += 4
    assert pending.due(10) == [Taken(at(5), 0)]
    assert pending.hours() == [at(5)]


def test_unreadable_pending_hours_are_logged_and_start_empty(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    spool.set_meta("k", "[1, 2")
    with caplog.at_level(logging.ERROR):
        assert PendingHours(spool, "k", settle_s=0).hours() == []
    assert "unreadable pending roll-up hours" in caplog.text


class RefusingSpool:
    """A spool whose meta table cannot be written (a full disk)."""

    def __init__(self) -> None:
        self.refuse = True
        self.meta: dict[str, str] = {}

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        if self.refuse:
            raise sqlite3.OperationalError("database or disk is full")
        self.meta[key] = value


def test_hours_that_could_not_be_written_down_are_not_pending_so_the_retry_notes_them() -> None:
    spool: Any = RefusingSpool()
    pending = PendingHours(spool, "k", settle_s=0)
    with pytest.raises(sqlite3.OperationalError):
        pending.note([at(5)])
    assert pending.hours() == []  # the writer keeps the batch and writes it again
    spool.refuse = False
    assert pending.note([at(5)]) == 1
    assert spool.meta == {"k": json.dumps([at(5)])}


# -- the loop ---------------------------------------------------------------------------


class FakeInflux:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.answer = WriteResult(200, "")

    def __call__(self, statement: str) -> WriteResult:
        self.statements.append(statement)
        return self.answer


def _backfill(
    spool: Spool, clock: Clock, query: FakeInflux, drained: list[bool] | None = None, **influx: Any
) -> RollupBackfill:
    settings = InfluxSettings(
        backfill_settle_s=influx.pop("settle", 0),
        write_backoff_initial_s=2,
        write_backoff_max_s=8,
        **influx,
    )
    state = drained if drained is not None else [True]
    return RollupBackfill(
        settings,
        spool,
        query,
        backlog_drained=lambda: state[0],
        clock_ms=lambda: at(12),
        monotonic=clock,
    )


def _hours_of(statement: str) -> tuple[int, int]:
    where = statement.split(" WHERE time >= ", 1)[1]
    start, rest = where.split("ms AND time < ", 1)
    return int(start), int(rest.split("ms", 1)[0])


def test_each_hour_and_each_measurement_is_a_statement_of_its_own(spool: Spool) -> None:
    query = FakeInflux()
    backfill = _backfill(spool, Clock(), query)
    hours = [at(h) for h in (0, 1, 2, 3, 4, 5, 6, 7, 9)]
    backfill.pending.note(hours)
    while len(backfill.pending):
        assert backfill.step() == 0.0
    # One statement a request, oldest hour first; consecutive hours are not grouped (one
    # hour of a 1,000-device fleet is ~20-35 s of InfluxDB's time already).
    runs = [(hour, hour + H) for hour in hours]
    assert [_hours_of(s) for s in query.statements] == [r for r in runs for _ in range(3)]
    assert [s.split(" INTO ")[1].split(" FROM ")[0] for s in query.statements] == [
        f'"fleet"."rp_1h"."{m}"' for _ in runs for m in rollup.measurements()
    ]
    assert all(";" not in s for s in query.statements)
    assert backfill.fields()["rollup_backfilled_hours"] == 9
    assert backfill.fields()["rollup_late_hours"] == 0
    assert spool.get_meta(pending_key(backfill._settings)) == "[]"


def test_at_most_n_hours_a_minute(spool: Spool) -> None:
    clock, query = Clock(), FakeInflux()
    backfill = _backfill(spool, clock, query, backfill_hours_per_minute=4)
    backfill.pending.note([at(h) for h in range(0, 20, 2)])  # 10 hours, none consecutive
    done = []
    for _ in range(10):
        wait = backfill.step()
        done.append(backfill.counters.backfilled_hours)
        if wait:
            break
    assert done[-1] == 4
    assert wait == pytest.approx(60.0)
    clock.now += 30
    assert backfill.step() == pytest.approx(30.0)
    assert backfill.counters.backfilled_hours == 4
    clock.now += 30
    while backfill.step() == 0.0:
        pass
    assert backfill.counters.backfilled_hours == 8


def test_a_refused_statement_keeps_its_hours_and_is_retried_after_the_backoff(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    clock, query = Clock(), FakeInflux()
    backfill = _backfill(spool, clock, query)
    backfill.pending.note([at(3), at(4)])
    query.answer = WriteResult(400, "retention policy not found: rp_1h")
    with caplog.at_level(logging.WARNING):
        assert backfill.step() == 0.0
        assert backfill.step() == 0.0  # the next hour is tried: refused too
    assert "kept pending" in caplog.text
    assert "retention policy not found" in caplog.text
    assert backfill.step() == 1.0  # both hours wait for their retry: nothing due
    assert len(query.statements) == 2  # each hour's first measurement failed: the others wait
    assert backfill.pending.hours() == [at(3), at(4)]
    assert backfill.fields()["rollup_backfill_failures"] == 2
    query.answer = WriteResult(200, "")
    clock.now += 2.0  # the first pause: 1-2 s (equal jitter)
    assert backfill.step() == 0.0
    assert backfill.step() == 0.0
    assert backfill.pending.hours() == []
    assert [_hours_of(s) for s in query.statements[2::3]] == [(at(3), at(4)), (at(4), at(5))]
    assert backfill.fields() == {
        "rollup_late_points": 0,
        "rollup_late_hours": 0,
        "rollup_backfilled_hours": 2,
        "rollup_backfill_failures": 2,
        "rollup_errors": 0,
    }


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            "ReadTimeoutError: HTTPConnectionPool(host='db', port=8086): Read timed out. "
            "(read timeout=300.0)",
            "did not finish within influx.backfill_timeout_s (300 s; a statement reads the "
            "whole fleet's hour - raise it)",
        ),
        (
            "MaxRetryError: HTTPConnectionPool(host='db', port=8086): Connection refused",
            "unreachable",
        ),
    ],
)
def test_a_statement_cut_short_by_its_timeout_names_the_key_that_sets_it(
    spool: Spool, caplog: pytest.LogCaptureFixture, body: str, said: str
) -> None:
    query = FakeInflux()
    backfill = _backfill(spool, Clock(), query)
    backfill.pending.note([at(3)])
    query.answer = WriteResult(0, body)
    with caplog.at_level(logging.WARNING):
        assert backfill.step() == 0.0
    assert f"roll-up of 2026-03-10 03:00 UTC (1 h) not recomputed: InfluxDB {said} (" in caplog.text
    assert backfill.pending.hours() == [at(3)]


def test_nothing_is_recomputed_while_the_backlog_drains_or_before_an_hour_settles(
    spool: Spool,
) -> None:
    clock, query, drained = Clock(), FakeInflux(), [False]
    backfill = _backfill(spool, clock, query, drained, settle=60)
    backfill.pending.note([at(3)])
    clock.now += 120
    assert backfill.step() == 1.0
    drained[0] = True
    backfill.pending.note([at(3)])  # more late points for it: it settles again
    clock.now += 59
    assert backfill.step() == 1.0
    assert query.statements == []
    clock.now += 1
    assert backfill.step() == 0.0
    assert len(query.statements) == 3  # the hour's three measurements


def test_the_writers_hook_notes_late_hours_and_counts_late_points(spool: Spool) -> None:
    backfill = _backfill(spool, Clock(), FakeInflux())
    backfill.note_written([_reading(1, at(11, 59)), _reading(2, at(2, 10)), _reading(3, at(2, 20))])
    assert backfill.pending.hours() == [at(2)]
    assert backfill.fields()["rollup_late_points"] == 6
    backfill.note_written([_reading(4, at(11, 59))])
    assert backfill.fields()["rollup_late_points"] == 6


def test_a_failure_in_the_hook_is_counted_and_the_batch_goes_on(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    backfill = _backfill(spool, Clock(), FakeInflux())
    broken: Any = [object()]  # not a spool row
    with caplog.at_level(logging.ERROR):
        backfill.note_written(broken)
    assert backfill.fields()["rollup_errors"] == 1
    assert "could not look for late points" in caplog.text


def test_an_hour_influxdb_keeps_refusing_holds_no_other_back(spool: Spool) -> None:
    clock = Clock()

    def influx(statement: str) -> WriteResult:
        start, end = _hours_of(statement)
        return WriteResult(400, "partial write") if start <= at(4) < end else WriteResult(200, "")

    backfill = _backfill(spool, clock, influx)  # type: ignore[arg-type]
    backfill.pending.note([at(3), at(4), at(5), at(6)])
    assert backfill.step() == 0.0  # 03:00 on its own: recomputed
    for _ in range(5):
        clock.now += 10.0  # past every pause
        while backfill.step() == 0.0:
            pass
    assert backfill.pending.hours() == [at(4)]
    assert backfill.counters.backfilled_hours == 3


def test_hours_whose_recompute_could_not_be_recorded_stay_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool: Any = RefusingSpool()
    spool.refuse = False
    backfill = _backfill(spool, Clock(), FakeInflux())
    backfill.pending.note([at(3)])
    spool.refuse = True  # the disk filled up meanwhile
    with caplog.at_level(logging.ERROR):
        assert backfill.step() == 1.0
    assert "could not record recomputed roll-up hours" in caplog.text
    assert backfill.pending.hours() == [at(3)]  # recomputed once more later: harmless
    assert json.loads(spool.meta[pending_key(backfill._settings)]) == [at(3)]
    assert backfill.fields()["rollup_errors"] == 1
    assert backfill.fields()["rollup_backfilled_hours"] == 0


def test_a_bug_in_a_step_is_counted_and_the_loop_goes_on(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(statement: str) -> WriteResult:
        raise RuntimeError("a bug")

    backfill = _backfill(spool, Clock(), broken)  # type: ignore[arg-type]
    backfill.pending.note([at(3)])
    stop = threading.Event()
    thread = threading.Thread(target=backfill.run, args=(stop,))
    with caplog.at_level(logging.ERROR):
        thread.start()
        try:
            wait_until(lambda: backfill.counters.loop_errors >= 1, timeout=10, message="a step")
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive()
    assert "roll-up backfill failed" in caplog.text
    assert backfill.pending.hours() == [at(3)]
    assert backfill.fields()["rollup_errors"] == 1
