"""A simulated day in a real InfluxDB, written by the real collector, for the dashboard tests.

`fleet simulate --start -24h` runs as its own process (the second core) and publishes to the
session broker; an in-process collector validates, spools and writes it, with its alert engine,
dead letters and pipeline counters, exactly as in production. A few malformed messages are
published as well so the dead-letter panels have reasons to count. The fill takes ~30-40 s once
per session; every dashboard test then only queries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.daemon.collector import rollup
from tests.harness.fleet import publisher, running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DATABASE = "fleet_grafana"
# 24 simulated hours in ~30 s of wall time, a reading per device every ~90 simulated seconds.
SPEEDUP = 2880
RATE_HZ = 32
FAULTS = [
    "--fault", "sw-02=21",
    "--low-battery", "hh-01=14",
    "--unplugged", "sw-04",
    "--flap", "hh-03",
]  # fmt: skip
BAD_MESSAGES = {
    "bad_json": b"{not json",
    "range": json.dumps(
        {"schema": 1, "device": "sw-01", "ts": 0, "battery": {"pct": 130}}
    ).encode(),
}


@dataclass(frozen=True)
class FilledDatabase:
    influx: InfluxServer
    database: str
    start_ms: int  # the simulated day's first reading
    end_ms: int  # after the last reading, the last pipeline point and the CQs' first run
    readings: int
    summary: str


def _simulate(config: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "fleet.daemon.cli", "simulate", "--config", str(config),
        "--start", "-24h", "--speedup", str(SPEEDUP), "--rate", str(RATE_HZ),
        "--segways", "4", "--handhelds", "3", "--seed", "7", *FAULTS,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"fleet simulate failed:\n{done.stdout}\n{done.stderr}"
    line = done.stdout.strip().splitlines()[-1]
    readings = int(line.split(" devices, ")[1].split(" readings")[0])
    return readings, line


@pytest.fixture(scope="session")
def filled(
    mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> FilledDatabase:
    tmp = tmp_path_factory.mktemp("grafana-fill")
    config = write_config(
        tmp,
        broker=mqtt_broker,
        influx=influx,
        database=DATABASE,
        client_id="collector-grafana",
    )
    settings = settings_from(config)
    start_ms = int(time.time() * 1000) - 24 * 3_600_000
    with running_collector(settings, mqtt_broker) as collector:
        readings, summary = _simulate(config)
        with publisher(settings, "grafana-bad") as link:
            for payload in BAD_MESSAGES.values():
                link.publish("fleet/v1/allingtown/segway/sw-01/telemetry", payload, qos=1)
        wait_until(
            lambda: (
                collector.ingest.counters.received >= readings + len(BAD_MESSAGES)
                and collector.spool.depth().rows == 0
            ),
            timeout=120,
            interval=0.2,
            message="the collector wrote every simulated reading",
        )
        # One more stats interval, so the pipeline measurement holds the final counters.
        wait_until(
            lambda: (
                influx.rows(
                    'SELECT last("received") FROM "pipeline" WHERE "device" = \'\' '
                    "AND time > now() - 1m",
                    DATABASE,
                )
                and influx.rows(
                    'SELECT last("received") FROM "pipeline" WHERE "device" = \'\'', DATABASE
                )[0]["last"]
                >= readings + len(BAD_MESSAGES)
            ),
            timeout=20,
            interval=0.2,
            message="the pipeline counters reached InfluxDB",
        )
        # The CQs only look back `downsample_for` (2 h): the day before is backfilled with
        # the CQs' own SELECT ... INTO, as README tells an operator to do after an outage.
        for measurement in rollup.measurements():
            influx.post_query(
                rollup.select_into(DATABASE, "raw", "rp_1h", measurement, f"time >= {start_ms}ms"),
                DATABASE,
            )
    return FilledDatabase(influx, DATABASE, start_ms, int(time.time() * 1000), readings, summary)
