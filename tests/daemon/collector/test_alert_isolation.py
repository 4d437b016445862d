"""One reading or control message the alert engine fails on costs that item only.

An in-process collector on the real broker; the failure is injected into the engine
for one device (no real input is known to break it - that is the point of the fuzz
tests), the rest of the batch must still be judged and the alert thread never restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.daemon import wire
from fleet.daemon.wire import Battery, DecodedReading
from tests.harness.fleet import running_collector, settings_from, write_config
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until


def low(device: str, seq: int = 1) -> DecodedReading:
    now = int(time.time() * 1000)
    return DecodedReading(
        "allingtown", "segway", device, seq, now, Battery(pct=5.0), None, None, "telemetry"
    )


def test_a_failing_reading_or_control_message_costs_only_itself(
    tmp_path: Path,
    make_broker: Callable[..., MosquittoServer],
    influx: InfluxServer,
    tmp_db: str,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    broker = make_broker()
    settings = settings_from(
        write_config(
            tmp_path,
            broker=broker,
            influx=influx,
            database=tmp_db,
            alerts='[alerts.kinds.segway]\ndisabled = ["offline", "battery_low"]\n',
        )
    )
    with running_collector(settings, broker) as collector:
        service = collector.alerts
        assert service is not None
        engine = service.engine
        # Injected where the engine judges one reading of a batch (observe_batch).
        observe, agent_availability = engine._observe, engine.agent_availability

        def broken_observe(reading: DecodedReading, now_ms: int, *out: list) -> bool:  # type: ignore[type-arg]
            if reading.device == "sw-bad":
                raise RuntimeError("injected failure")
            return observe(reading, now_ms, *out)

        def broken_agent(site: str, agent: str, online: bool, now_ms: int, *_: object) -> list:  # type: ignore[type-arg]
            raise RuntimeError("injected failure")

        engine._observe = broken_observe  # type: ignore[method-assign,assignment]
        engine.agent_availability = broken_agent  # type: ignore[method-assign,assignment]

        service.observe([low("sw-1"), low("sw-bad"), low("sw-2")])  # one batch

        def firing() -> list[str]:
            return sorted(a.device for a in engine.alerts(firing_only=True))

        assert wait_until(lambda: firing() == ["sw-1", "sw-2"], message="both judged")
        assert service.counters.errors == 1

        control = wire.Control(what="agent", site="allingtown", kind="agent", id="ag-1", rule="")
        service.control(control, b"offline")
        wait_until(lambda: service.counters.errors == 2)
        # The thread goes on: later readings are judged as before.
        service.observe([low("sw-3")])
        wait_until(lambda: "sw-3" in firing(), message="a later reading judged")
        engine.agent_availability = agent_availability  # type: ignore[method-assign]
        assert collector._alert_fields()["alert_errors"] == 2  # the `pipeline` field
    failures = [r for r in caplog.records if "injected failure" in (r.exc_text or "")]
    assert len(failures) == 2  # each logged with its traceback
    assert not [r for r in caplog.records if "crashed; restarting" in r.getMessage()]
