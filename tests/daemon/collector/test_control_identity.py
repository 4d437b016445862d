"""The collector's alert service checks who speaks on the control topics (issue 11, item 4).

The service runs on its own thread as in the collector, on a clock the test moves; what a
refused message did not do is shown by what a later, accepted one did (the service handles
its work in order). The end-to-end cases through the broker: test_identity_e2e.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon import wire
from fleet.daemon.collector import alerting
from fleet.daemon.collector.alerting import AlertService
from fleet.daemon.spool import Spool
from tests.harness.alerting import FakeClock
from tests.harness.waiting import wait_until

SITE = "allingtown"
REGISTRY = """
[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"
site = "westhaven"

[[agents]]
id = "agent-1"
devices = ["sw-01"]
"""


def settings(tmp_path: Path, registry: str) -> FleetSettings:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[site]\nid = "{SITE}"\nothers = {{ westhaven = "Westhaven" }}\n\n'
        f'[alerts]\nstate_path = "{tmp_path / "alerts.sqlite"}"\n{registry}'
    )
    return load_settings(path, environ={})


@contextmanager
def running(tmp_path: Path, registry: str = REGISTRY) -> Iterator[tuple[AlertService, FakeClock]]:
    clock = FakeClock(int(time.time() * 1000))
    service = AlertService(
        settings(tmp_path, registry),
        spool=Spool(tmp_path / "spool.sqlite", max_bytes=1 << 30, fsync=False),
        publish=lambda topic, payload, retain: None,
        on_spooled=lambda: None,
        clock_ms=clock,
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="alerts", daemon=True)
    thread.start()
    try:
        yield service, clock
    finally:
        stop.set()
        thread.join(10)


def send(service: AlertService, topic: str, payload: bytes) -> None:
    control = wire.parse_control("fleet", topic)
    assert control is not None, topic
    service.control(control, payload)


def firing(service: AlertService, rule: str) -> list[tuple[str, str]]:
    return sorted(
        (a.device, a.site) for a in service.engine.alerts(firing_only=True) if a.rule == rule
    )


def low(device: str, now_ms: int) -> wire.DecodedReading:
    battery = wire.Battery(pct=4.0, charging=False)
    return wire.DecodedReading(SITE, "segway", device, 1, now_ms, battery, None, None, "telemetry")


def drained(service: AlertService, clock: FakeClock) -> None:
    """Everything queued so far was handled: a reading queued after it has fired."""
    sentinel = f"sentinel-{clock.now_ms}"
    service.observe([low(sentinel, clock.now_ms)])
    wait_until(
        lambda: (sentinel, SITE) in firing(service, "battery_critical"),
        timeout=20,
        message="the alert thread handled what was queued",
    )


def agent_down_after_the_hold(service: AlertService, clock: FakeClock) -> list[tuple[str, str]]:
    """agent-1 goes offline; past agent_down's 60 s hold, which agents' alerts fire."""
    send(service, wire.agent_availability_topic("fleet", SITE, "agent-1"), b"offline")
    drained(service, clock)
    clock.advance(61)

    def fired() -> list[tuple[str, str]]:
        service.acknowledge("-", "-", "nudge")  # wakes the alert thread for a tick now
        return firing(service, "agent_down")

    return wait_until(fired, timeout=20, message="agent_down fired")


def test_availability_of_an_unregistered_or_misplaced_agent_is_ignored_and_counted(
    tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="fleet.daemon.collector.alerting")
    with running(tmp_path) as (service, clock):
        send(service, wire.agent_availability_topic("fleet", SITE, "rogue"), b"offline")
        send(service, wire.agent_availability_topic("fleet", "westhaven", "agent-1"), b"offline")
        assert service.counters.availability_ignored == 2
        assert service.engine_fields()["alert_availability_ignored"] == 2
        # The registered agent's own message, sent after them, is the only one acted on.
        assert agent_down_after_the_hold(service, clock) == [("agent-1", SITE)]
    assert service.counters.bad_control == 0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        'ignored offline on fleet/v1/allingtown/agent/rogue/availability: agent "rogue" is '
        "not registered in [[agents]]",
        'ignored offline on fleet/v1/westhaven/agent/agent-1/availability: agent "agent-1" is '
        'registered for site "allingtown", not "westhaven"',
    ]


def test_with_no_agent_registered_every_agent_counts(tmp_path):
    with running(tmp_path, registry="") as (service, clock):
        send(service, wire.agent_availability_topic("fleet", SITE, "agent-9"), b"offline")
        assert agent_down_after_the_hold(service, clock) == [("agent-1", SITE), ("agent-9", SITE)]
    assert service.counters.availability_ignored == 0


@pytest.mark.parametrize(
    ("topic", "counts"),
    [
        (wire.availability_topic("fleet", SITE, "segway", "sw-01"), True),
        (wire.availability_topic("fleet", "westhaven", "segway", "sw-01"), False),  # not its site
        (wire.availability_topic("fleet", "westhaven", "segway", "sw-02"), False),  # no agent's
        (wire.availability_topic("fleet", SITE, "segway", "sw-77"), False),  # not registered
    ],
)
def test_device_availability_counts_only_from_where_the_registry_says(tmp_path, topic, counts):
    with running(tmp_path) as (service, _):
        send(service, topic, b"offline")
    assert service.counters.availability_ignored == (0 if counts else 1)


def test_an_ack_on_another_sites_topic_is_refused_and_counted(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fleet.daemon.collector.alerting")
    with running(tmp_path) as (service, clock):
        service.observe([low("sw-01", clock.now_ms)])
        wait_until(
            lambda: firing(service, "battery_critical"), timeout=20, message="battery_critical"
        )
        send(service, wire.alert_ack_topic("fleet", "westhaven", "sw-01", "battery_critical"),
             b"Mallory")  # fmt: skip
        assert service.counters.bad_control == 1
        send(service, wire.alert_ack_topic("fleet", SITE, "sw-01", "battery_critical"),
             b'{"by": "Sgt. Reyes"}')  # fmt: skip

        def acknowledged_by() -> str | None:
            (alert,) = [a for a in service.engine.alerts() if a.device == "sw-01"]
            return alert.acknowledged_by

        # An alert is acknowledged once: had Mallory's counted, it would be hers.
        assert wait_until(acknowledged_by, timeout=20, message="acknowledged") == "Sgt. Reyes"
    assert (service.counters.bad_control, service.counters.acks) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "ignored fleet/v1/westhaven/alerts/sw-01/battery_critical/ack: ack for "
        "sw-01/battery_critical on site westhaven, but the alert is at allingtown"
    ]


def test_refusals_a_client_can_provoke_are_logged_ten_a_minute(caplog):
    caplog.set_level(logging.WARNING, logger="fleet.daemon.collector.alerting")
    now = [0.0]
    throttled = alerting._Throttled(clock=lambda: now[0])
    for n in range(25):
        throttled.warning("refused %d", n)
    now[0] = 59.9
    throttled.warning("refused %d", 25)
    now[0] = 60.0
    throttled.warning("refused %d", 26)
    assert [r.getMessage() for r in caplog.records] == [
        *(f"refused {n}" for n in range(10)),
        "16 more refused control messages in that minute",
        "refused 26",
    ]
