"""A SIGKILL during the InfluxDB write: every reading still stored exactly once.

`fleet collector` runs as systemd runs it and writes to a real InfluxDB through a relay
(tests/harness/relay.py) that stops one `POST /write` half-way; the collector is killed there:

- the request held back: InfluxDB never got the batch, only the spool has it;
- the answer held back: InfluxDB stored the batch, but the collector never learned it, so
  its spool still holds the rows and writes them again after the restart (the same points:
  InfluxDB keeps one per series and time).

Meanwhile the rest of the 1,000 readings wait at the broker for the collector's session.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.daemon.collector.test_no_loss import (
    TOPIC,
    CollectorProcess,
    assert_all_exactly_once,
    reading,
    spooled_readings,
    stored_seqs,
)
from tests.harness.fleet import publisher, set_keys
from tests.harness.process import stop_process, tail
from tests.harness.relay import Hold, HttpRelay
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.slow

N = 1000


@pytest.mark.parametrize("hold", ["request", "response"])
def test_collector_killed_during_the_influxdb_write(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str, hold: Hold
) -> None:
    host, port = influx.url.removeprefix("http://").split(":")
    relay = HttpRelay(host, int(port))
    collector = CollectorProcess(tmp_path, mqtt_broker, influx, tmp_db)
    # The collector writes through the relay; the test reads the real server. A long write
    # timeout: the held write must still be in flight when the kill comes (with the default
    # 10 s, a loaded machine can reach it first, and the retry empties the spool).
    set_keys(collector.config, {"influx.url": relay.url, "influx.timeout_s": 600})
    proc = collector.start()
    try:
        with publisher(collector.settings) as pub:
            for seq in range(1, 301):
                pub.publish(TOPIC, reading(seq))
            wait_until(
                lambda: len(stored_seqs(influx, tmp_db)) == 300, timeout=60, message="300 stored"
            )
            # InfluxDB answers the test before the relay has passed its answer to the
            # collector: armed now, the relay would hold the answer of the write of 1-300
            # itself. Confirmed means gone from the spool.
            wait_until(
                lambda: spooled_readings(collector.spool) == 0, timeout=30, message="300 confirmed"
            )
            relay.arm(hold, marker=b"battery,")  # a write with readings, not only stats
            for seq in range(301, 601):
                pub.publish(TOPIC, reading(seq))
            wait_until(relay.held.is_set, timeout=60, message=f"a write's {hold} held")
            if hold == "response":
                # InfluxDB has the batch whose answer the collector waits for.
                wait_until(
                    lambda: len(stored_seqs(influx, tmp_db)) > 300,
                    timeout=30,
                    message="the held write stored",
                )
            else:
                assert len(stored_seqs(influx, tmp_db)) == 300
            # Readings wait in the spool behind the held write (ingest goes on meanwhile).
            wait_until(
                lambda: spooled_readings(collector.spool) > 0, timeout=30, message="some spooled"
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # Still there after the kill: nothing was taken as written that was not.
            assert spooled_readings(collector.spool) > 0
            relay.release()
            for seq in range(601, N + 1):
                pub.publish(TOPIC, reading(seq))
        proc = collector.start()
        assert_all_exactly_once(influx, tmp_db)
        wait_until(
            lambda: spooled_readings(collector.spool) == 0, timeout=30, message="spool emptied"
        )
        assert relay.writes >= 3  # before, the killed one, after
        assert stop_process(proc, timeout=30) == 0, tail(collector.log)
    finally:
        stop_process(proc)
        relay.close()
