"""The agent on a real Mosquitto: v1 telemetry with seq, availability, supervision, watchdog."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import DriverSpec, wall_ms
from fleet.drivers.base import DriverSink
from tests.harness.agent import (
    Script,
    Subscriber,
    availability_topic,
    retained,
    running_agent,
    scripted_spec,
    settings_of,
    telemetry_topic,
    write_agent_config,
)
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until


def decoder() -> wire.Decoder:
    return wire.Decoder(
        prefix="fleet",
        default_site="allingtown",
        kinds=["segway", "handheld"],
        registry={},
        owntracks_map={},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=wall_ms,
    )


def test_readings_arrive_as_v1_telemetry_with_seq(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    script = Script(device="sw-01", readings=3)
    sub = Subscriber(settings, mqtt_broker, "fleet/v1/allingtown/#")
    agent = Agent(settings, specs=[scripted_spec(script)])
    with running_agent(agent):
        topic = telemetry_topic("sw-01")
        wait_until(lambda: len(sub.payloads(topic)) >= 3, message="3 readings")
        readings = [decoder().decode(topic, payload) for payload in sub.payloads(topic)]
        assert [r.seq for r in readings if r is not None] == [1, 2, 3]
        for reading, pct in zip(readings, script.values, strict=True):
            assert reading is not None
            assert (reading.site, reading.kind, reading.device) == ("allingtown", "segway", "sw-01")
            assert reading.battery is not None
            assert reading.battery.pct == pct
            assert reading.battery.voltage_v == 54.2
            assert reading.battery.charging is False
            assert reading.status is not None
            assert reading.status.state == "idle"
            assert reading.location is None
            assert abs(reading.ts_ms - wall_ms()) < 60_000
        # None fields are left out, not sent as null.
        assert b"null" not in sub.payloads(topic)[0]
        assert sub.payloads(availability_topic("sw-01")) == [b"online"]
        assert b"online" in sub.payloads(agent.agent_topic)
    sub.close()
    # A clean stop leaves the device and the agent offline (retained).
    assert retained(settings, mqtt_broker, availability_topic("sw-01")) == b"offline"
    assert retained(settings, mqtt_broker, agent.agent_topic) == b"offline"


def test_a_device_online_while_the_connect_is_being_announced_is_published_once(
    tmp_path: Path, mqtt_broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link says connected before the loop has republished the states (paho's thread
    is late under load): a device reported online in between goes out once, by the
    republish, not also as a change (the suite's `[b'online', b'online']`)."""
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    reported = threading.Event()
    agents: list[Agent] = []
    announce = Agent._link_connected

    def late_announce(self: Agent) -> None:
        reported.wait(10)  # paho's thread, link already connected: the window, held open
        announce(self)

    class ReportsOnceConnected:
        kind: ClassVar[str] = "scripted"

        async def run(self, sink: DriverSink) -> None:
            await asyncio.to_thread(agents[0].link.wait_connected, 10)
            sink.availability("sw-09", True, "connected")
            reported.set()
            await asyncio.Event().wait()  # until stopped

    monkeypatch.setattr(Agent, "_link_connected", late_announce)
    spec = DriverSpec("late", ("sw-09",), "segway", False, ReportsOnceConnected)
    topic = availability_topic("sw-09")
    sub = Subscriber(settings, mqtt_broker, topic)
    agents.append(Agent(settings, specs=[spec]))
    with running_agent(agents[0]):
        wait_until(lambda: sub.payloads(topic), message="online")
        assert reported.is_set()
    # The stop's `offline` comes after everything the agent published on this connection.
    wait_until(lambda: b"offline" in sub.payloads(topic), message="offline")
    assert sub.payloads(topic) == [b"online", b"offline"]
    sub.close()


def test_seq_continues_across_a_restart(tmp_path: Path, mqtt_broker: MosquittoServer) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    sub = Subscriber(settings, mqtt_broker, telemetry_topic("sw-02"))
    for _ in range(2):
        script = Script(device="sw-02", readings=3)
        with running_agent(Agent(settings, specs=[scripted_spec(script)])) as agent:
            wait_until(lambda: agent.store.stats.forwarded >= 3, message="3 forwarded")
    wait_until(lambda: len(sub.seqs()) >= 6, message="6 readings")
    assert sub.seqs() == [1, 2, 3, 4, 5, 6]
    sub.close()


def test_device_registry_decides_kind_and_site(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    registry = '[[devices]]\nid = "hh-07"\nkind = "handheld"\nsite = "westhaven"\n'
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, extra=registry))
    sub = Subscriber(settings, mqtt_broker, "fleet/v1/#")
    script = Script(device="hh-07", readings=1)
    with running_agent(Agent(settings, specs=[scripted_spec(script, kind="segway")])):
        topic = telemetry_topic("hh-07", kind="handheld", site="westhaven")
        wait_until(lambda: sub.payloads(topic), message="reading under the registry's kind/site")
    assert sub.payloads(availability_topic("hh-07", kind="handheld", site="westhaven"))[0] == (
        b"online"
    )
    sub.close()


def test_an_invalid_reading_is_dropped_without_a_seq_gap(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    sub = Subscriber(settings, mqtt_broker, telemetry_topic("sw-03"))
    script = Script(device="sw-03", readings=4, invalid_at=2)
    with running_agent(Agent(settings, specs=[scripted_spec(script)])) as agent:
        wait_until(lambda: len(sub.seqs()) >= 3, message="the 3 valid readings")
        assert agent.invalid_readings == 1
        assert script.runs == 1  # the driver was not disturbed
    assert sub.seqs() == [1, 2, 3]
    assert [doc["battery"]["pct"] for doc in sub.json()] == script.values
    sub.close()


def test_a_failing_driver_is_restarted_then_given_up_and_the_agent_lives_on(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    config = write_agent_config(
        tmp_path, mqtt_broker, agent="restart_budget = 2\nrestart_window_s = 60"
    )
    settings = settings_of(config)
    failing = Script(device="sw-04", fail_after=1)
    healthy = Script(device="sw-05", interval_s=0.02)
    sub = Subscriber(settings, mqtt_broker, "fleet/v1/allingtown/#")
    agent = Agent(settings, specs=[scripted_spec(failing), scripted_spec(healthy)])
    with running_agent(agent):
        bad = agent.drivers[0]
        wait_until(lambda: bad.gave_up, message="the failing driver given up")
        assert (failing.runs, bad.failures) == (3, 3)  # start + 2 restarts, then over budget
        assert agent.devices.online("sw-04") is False
        # The agent and the other driver keep going after the give-up.
        before = healthy.emitted
        wait_until(lambda: healthy.emitted >= before + 10, message="healthy driver continues")
        assert agent.drivers[1].starts == 1
        wait_until(lambda: sub.seqs(telemetry_topic("sw-04")) == [1, 2, 3], message="sw-04 seqs")
    # Availability is a state, not a log of events: flips while the link was still
    # connecting are not sent, only the state at connect time.
    assert sub.payloads(availability_topic("sw-04"))[-1] == b"offline"
    sub.close()
    assert retained(settings, mqtt_broker, availability_topic("sw-04")) == b"offline"


def test_a_vanished_device_goes_offline_retained(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    script = Script(device="hh-01", vanish_after=2)
    sub = Subscriber(settings, mqtt_broker, availability_topic("hh-01", kind="handheld"))
    with running_agent(Agent(settings, specs=[scripted_spec(script, kind="handheld")])):
        # Availability is a state: a repeat of the same state (republished on connect) is fine.
        wait_until(
            lambda: (
                [state for state, _ in itertools.groupby(sub.payloads())] == [b"online", b"offline"]
            ),
            message="online, offline",
        )
        # Seen by anyone who subscribes later, while the agent is still up.
        topic = availability_topic("hh-01", kind="handheld")
        assert retained(settings, mqtt_broker, topic) == b"offline"
    sub.close()


def test_ble_watchdog_restarts_only_the_ble_drivers_when_adverts_stop(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent="ble_watchdog_s = 1"))
    ble = Script(device="hh-02", adverts_from_run=2)  # run 1: a scanner that hears nothing
    serial = Script(device="sw-06")
    specs = [scripted_spec(ble, ble=True, kind="handheld"), scripted_spec(serial)]
    with running_agent(Agent(settings, specs=specs)) as agent:
        wait_until(lambda: ble.runs == 2, timeout=20, message="BLE driver restarted")
        assert agent.watchdog.restarts == 1
        # Adverts flow again: no further restarts for more than two periods.
        emitted = ble.emitted
        wait_until(lambda: ble.emitted >= emitted + 150, timeout=10, message="3 s of run 2")
        assert (ble.runs, agent.watchdog.restarts) == (2, 1)
        assert (serial.runs, agent.drivers[1].starts) == (1, 1)
        assert agent.drivers[0].failures == 0  # a watchdog restart is not a failure


def test_without_ble_drivers_there_is_no_watchdog(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent="ble_watchdog_s = 0.2"))
    serial = Script(device="sw-07")
    with running_agent(Agent(settings, specs=[scripted_spec(serial)])) as agent:
        wait_until(lambda: serial.emitted >= 50, message="1 s of readings")
        assert agent.watchdog.restarts == 0
        assert serial.runs == 1


@pytest.mark.parametrize("budget", [0])
def test_budget_zero_gives_up_at_the_first_failure(
    tmp_path: Path, mqtt_broker: MosquittoServer, budget: int
) -> None:
    settings = settings_of(
        write_agent_config(tmp_path, mqtt_broker, agent=f"restart_budget = {budget}")
    )
    script = Script(device="sw-08", fail_after=1)
    with running_agent(Agent(settings, specs=[scripted_spec(script)])) as agent:
        wait_until(lambda: agent.drivers[0].gave_up, message="given up")
        assert script.runs == 1
