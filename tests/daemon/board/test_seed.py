"""Seeding the board's view from a real InfluxDB after a restart: history and latest values
come back as the collector stored them; an unreachable database seeds nothing, quietly."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon.board.fleetview import FleetView
from fleet.daemon.board.seed import seed_from_influx
from fleet.daemon.collector.sinks import V1Sink
from tests.harness.influx import InfluxServer

M = 60_000
H = 3_600_000


def settings(tmp_path: Path, url: str, database: str) -> FleetSettings:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[influx]\nurl = "{url}"\ndatabase = "{database}"\ntimeout_s = 5\n'
        "[board]\nhistory_hours = 6\nhistory_step_s = 300\n",
        encoding="utf-8",
    )
    return load_settings(path, environ={})


def test_history_and_latest_come_back_from_influx(
    tmp_path: Path, influx: InfluxServer, tmp_db: str
) -> None:
    s = settings(tmp_path, influx.url, tmp_db)
    assert V1Sink(s.influx).bootstrap().ok  # the database and its "raw" policy, as the collector
    now = int(time.time() * 1000) // 300_000 * 300_000  # a bucket boundary
    tags = "site=allingtown,kind=segway,device=sw-03"
    lines = [
        # 3 h of drain at 8 %/h, a reading a minute; and one 9 h ago (outside the 6 h kept)
        f"battery,{tags} pct={90 - 8 * i / 60},charging=false {now - (180 - i) * M}"
        for i in range(181)
    ] + [
        f"battery,{tags} pct=99.0,charging=true {now - 9 * H}",
        f'status,{tags} state="riding",range_km=21.5 {now - 2 * M}',
        f"location,{tags} lat=41.29,lon=-72.95 {now - M}",
        f"battery,site=westhaven,kind=handheld,device=hh-02 pct=55.0 {now - 10 * M}",
    ]
    influx.write(tmp_db, "\n".join(lines), rp="raw")

    view = FleetView(s)
    fed = seed_from_influx(view, s)
    assert fed > 36
    facts = view.device("sw-03")
    assert facts is not None
    assert facts.latest is not None
    assert facts.latest.ts_ms == now  # the newest reading's own time, not its bucket's
    assert facts.latest.pct == pytest.approx(66)
    assert (facts.latest.state, facts.latest.range_km, facts.latest.lat) == ("riding", 21.5, 41.29)
    ts = [x.ts_ms for x in facts.history]
    assert ts[0] >= now - 6 * H
    assert len(ts) == 37  # 3 h in 5-min buckets, and the newest point
    assert facts.learned is not None
    assert facts.learned.drain_pct_per_h == pytest.approx(8, rel=0.05)
    other = view.device("hh-02")
    assert other is not None
    assert (other.site, other.kind) == ("westhaven", "handheld")


def test_an_unreachable_influx_seeds_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path, "http://127.0.0.1:9", "fleet")
    view = FleetView(s)
    with caplog.at_level(logging.WARNING):
        assert seed_from_influx(view, s) == 0
    assert "could not seed the history from InfluxDB" in caplog.text
    assert view.devices() == []


def test_a_query_error_seeds_nothing(
    tmp_path: Path, influx: InfluxServer, tmp_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # No "raw" retention policy in a bare database: InfluxDB answers with an error.
    s = settings(tmp_path, influx.url, tmp_db)
    with caplog.at_level(logging.WARNING):
        assert seed_from_influx(FleetView(s), s) == 0
    assert "raw" in caplog.text


def test_a_database_not_made_yet_is_a_first_start_not_a_warning(
    tmp_path: Path, influx: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path, influx.url, "never_created_here")
    with caplog.at_level(logging.INFO, logger="fleet.daemon.board.seed"):
        assert seed_from_influx(FleetView(s), s) == 0
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert (
        "nothing to refill from InfluxDB yet (database 'never_created_here' not found)"
        in record.getMessage()
    )
