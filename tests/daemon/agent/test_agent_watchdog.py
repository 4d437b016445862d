"""The agent under systemd's eye: a real datagram socket posing as $NOTIFY_SOCKET, a real broker.
READY only once MQTT is connected; STATUS with readings/s, the outbox and the drivers; the
WATCHDOG=1 pings stop while the event loop is blocked or MQTT is down, and resume after.

One datagram per notifier tick: "no ping for N intervals" is counted in datagrams, or in
ticks the test drives itself."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import DriverSpec
from fleet.daemon.agent.systemd import LOOP
from fleet.drivers.base import DriverSink
from tests.harness.agent import (
    Script,
    running_agent,
    scripted_spec,
    settings_of,
    write_agent_config,
)
from tests.harness.process import spawn, stop_process, tail
from tests.harness.sdnotify import Datagram, NotifySocket
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

FLEET = str(Path(sys.executable).with_name("fleet"))
QUIET_TICKS = 5
FIGURES = r"[\d,.]+ readings/s, outbox [\d,]+ readings, drivers {up} up, {down} down"


@pytest.fixture
def sock(tmp_path: Path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


def pinged(d: Datagram) -> bool:
    return d.get("WATCHDOG") == "1"


def test_fleet_agent_is_ready_once_connected_and_pings_only_while_mqtt_is_up(
    tmp_path: Path, sock: NotifySocket, make_broker
):
    broker: MosquittoServer = make_broker()
    broker.stop()  # the agent starts before its broker
    config = write_agent_config(tmp_path, broker)
    log = tmp_path / "agent.log"
    env = {**os.environ, **sock.env(watchdog_s=0.4)}  # one tick, one datagram, every 0.2 s
    proc = spawn([FLEET, "agent", "--config", str(config)], log, env=env)
    healthy = re.compile("^" + FIGURES.format(up=0, down=0) + ", MQTT connected$")
    try:
        first = sock.wait_for(lambda d: True, message=f"a first word\n{tail(log)}")
        assert first == {
            "STATUS": f"starting: connecting to MQTT broker 127.0.0.1:{broker.port}; "
            "outbox 0 readings"
        }
        broker.start()
        ready = sock.wait_for(lambda d: "READY" in d, message=f"READY\n{tail(log)}")
        assert sock.received[:-1] == [first]  # nothing else before READY: no ping
        assert pinged(ready), ready
        assert healthy.match(ready["STATUS"]), ready

        broker.stop()
        down = sock.wait_for(lambda d: "MQTT disconnected" in d["STATUS"], message="MQTT down")
        quiet = sock.next(QUIET_TICKS)
        assert not any(pinged(d) for d in [down, *quiet]), [down, *quiet]

        broker.start()
        back = sock.wait_for(pinged, message=f"pings after the broker is back\n{tail(log)}")
        assert healthy.match(back["STATUS"]), back
    finally:
        code = stop_process(proc, timeout=30)
    assert code == 0, tail(log)
    sock.drain()
    assert sock.received[-1] == {
        "STOPPING": "1",
        "STATUS": "stopping: storing and sending the outbox",
    }


class LoopBlocker:
    """A driver with the classic bug: on cue it makes a blocking call on the event loop."""

    kind: ClassVar[str] = "blocker"

    def __init__(self, wedge: threading.Event, entered: threading.Event, release: threading.Event):
        self.wedge, self.entered, self.release = wedge, entered, release

    async def run(self, sink: DriverSink) -> None:
        sink.availability("sw-41", True)
        while True:
            if self.wedge.is_set():
                self.wedge.clear()
                self.blocking_read()
            await asyncio.sleep(0.02)

    def blocking_read(self) -> None:
        self.entered.set()
        self.release.wait(60)


def test_the_pings_stop_while_the_event_loop_is_blocked_and_resume_after(
    tmp_path: Path, sock: NotifySocket, mqtt_broker, monkeypatch, caplog
):
    # A long watchdog period: the notifier's thread ticks every 5 s; the test drives its own.
    for key, value in sock.env(watchdog_s=3600).items():
        monkeypatch.setenv(key, value)
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker, agent="restart_budget = 0"))
    wedge, entered, release = threading.Event(), threading.Event(), threading.Event()
    blocker = DriverSpec(
        name="blocker",
        devices=("sw-41",),
        device_kind="segway",
        ble=False,
        factory=lambda: LoopBlocker(wedge, entered, release),
    )
    broken = Script(device="sw-42", fail_after=1)  # fails at once; budget 0: given up
    specs = [scripted_spec(Script(device="sw-40", interval_s=0.05)), blocker, scripted_spec(broken)]
    agent = Agent(settings, specs=specs)
    agent.systemd.watch.allowances[LOOP] = 1.0  # 30 s in production
    with running_agent(agent):
        try:
            check_the_loop(agent, sock, wedge, entered, release, caplog)
        finally:
            release.set()  # a failed check must not leave the loop blocked
    sock.drain()
    assert sock.received[-1]["STOPPING"] == "1"


def check_the_loop(
    agent: Agent,
    sock: NotifySocket,
    wedge: threading.Event,
    entered: threading.Event,
    release: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock.wait_for(lambda d: "READY" in d, message="READY")
    notifier = agent.systemd.notifier
    assert notifier is not None
    wait_until(lambda: agent.drivers[2].gave_up, message="the broken driver given up")

    def counting() -> str:
        sent = notifier.tick() or ""
        return sent if re.search(r"STATUS=[1-9][\d.]* readings/s", sent) else ""

    healthy = wait_until(counting, message="readings counted")
    assert "WATCHDOG=1" in healthy, healthy
    figures = FIGURES.format(up=2, down=1) + r" \(scripted:sw-42\), MQTT connected$"
    assert re.search(r"STATUS=" + figures, healthy, re.MULTILINE), healthy

    wedge.set()
    assert entered.wait(10), "the driver never blocked"
    with caplog.at_level(logging.ERROR, logger="fleet.daemon.liveness"):
        wait_until(lambda: LOOP in dict(agent.systemd.watch.stale()), message="loop stalled")
        sent = [notifier.tick() or "" for _ in range(QUIET_TICKS)]
    assert not any("WATCHDOG=1" in s for s in sent), sent
    assert all(re.search(r"STATUS=event loop stalled for \d+ s; ", s) for s in sent), sent
    seen = sock.drain()
    first = next(i for i, d in enumerate(seen) if "event loop stalled" in d["STATUS"])
    assert not any(pinged(d) for d in seen[first:]), seen
    assert "event loop has not turned for" in caplog.text
    assert "in blocking_read" in caplog.text  # where the loop is stuck

    release.set()
    wait_until(lambda: not agent.systemd.watch.stale(), message="the loop turns again")
    resumed = notifier.tick() or ""
    assert "WATCHDOG=1" in resumed, resumed
    assert "stalled" not in resumed, resumed
