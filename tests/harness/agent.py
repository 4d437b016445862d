"""Test parts for the agent: a scripted driver, an agent on its own thread, a subscriber.

`ScriptedDriver` is a real driver (it implements `drivers.base.Driver`): it
emits readings on a schedule, and can fail, vanish or stop advertising on cue.
Its `Script` records what every run did, so tests can assert on restarts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from fleet.config import FleetSettings, load_settings
from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import DriverSpec, wall_ms
from fleet.drivers.base import DriverSink
from fleet.drivers.readings import Battery, Reading, State, Status
from tests.harness.fleet import Listener
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

_ids = itertools.count(1)


@dataclass
class Script:
    """What a scripted driver does; the counters say what it did."""

    device: str = "sw-01"
    interval_s: float = 0.02
    readings: int | None = None  # per run; None = forever
    fail_after: int | None = None  # raise after this many readings in a run
    vanish_after: int | None = None  # then report offline and go silent (still running)
    adverts_from_run: int | None = None  # call advert_seen() each tick from this run on
    invalid_at: int | None = None  # the reading with this (1-based) total index is invalid
    runs: int = 0
    calls: int = 0  # readings handed to the sink, all runs, invalid ones included
    emitted: int = 0  # valid readings handed to the sink, all runs
    values: list[float] = field(default_factory=list)  # pct of each valid reading, in order

    def pct(self, index: int) -> float:
        return float(index % 100) + 0.5


class ScriptedDriver:
    kind: ClassVar[str] = "scripted"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def run(self, sink: DriverSink) -> None:
        script = self.script
        script.runs += 1
        run = script.runs
        sink.availability(script.device, True, f"scripted run {run}")
        in_run = 0
        while True:
            if script.adverts_from_run is not None and run >= script.adverts_from_run:
                sink.advert_seen()
            done = script.readings is not None and in_run >= script.readings
            vanished = script.vanish_after is not None and in_run >= script.vanish_after
            if vanished and in_run == script.vanish_after:
                sink.availability(script.device, False, "stopped answering")
                in_run += 1  # report it once
            if not done and not vanished:
                self._emit(sink)
                in_run += 1
                if script.fail_after is not None and in_run >= script.fail_after:
                    raise RuntimeError(f"scripted failure in run {run}")
            await asyncio.sleep(script.interval_s)

    def _emit(self, sink: DriverSink) -> None:
        script = self.script
        script.calls += 1
        if script.calls == script.invalid_at:
            sink.reading(Reading(script.device, wall_ms(), battery=Battery(pct=150.0)))
            return
        pct = script.pct(script.emitted + 1)
        script.emitted += 1
        script.values.append(pct)
        sink.reading(
            Reading(
                script.device,
                wall_ms(),
                battery=Battery(pct=pct, voltage_v=54.2, charging=False),
                status=Status(state=State.IDLE, odometer_km=12.5),
            )
        )


def scripted_spec(script: Script, *, ble: bool = False, kind: str = "segway") -> DriverSpec:
    return DriverSpec(
        name=f"scripted:{script.device}",
        devices=(script.device,),
        device_kind=kind,
        ble=ble,
        factory=lambda: ScriptedDriver(script),
    )


def write_agent_config(
    tmp_path: Path,
    broker: MosquittoServer,
    *,
    agent: str = "",
    extra: str = "",
    fsync: bool = False,
) -> Path:
    """A TOML config for an agent on the test broker; `agent` adds keys to [agent]."""
    n = next(_ids)
    path = tmp_path / f"agent-{n}.toml"
    path.write_text(
        f"""
log_level = "DEBUG"

[site]
id = "allingtown"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5

[agent]
id = "agent-t{n}-{os.getpid()}"
outbox_path = "{tmp_path / "outbox.sqlite"}"
outbox_fsync = {"true" if fsync else "false"}
restart_backoff_initial_s = 0.05
restart_backoff_max_s = 0.2
drain_timeout_s = 5
{agent}
{extra}
"""
    )
    return path


def settings_of(path: Path) -> FleetSettings:
    return load_settings(path, environ={})


@contextmanager
def running_agent(agent: Agent) -> Iterator[Agent]:
    """Run `agent` on its own thread (its own event loop); stop it cleanly at the end."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(agent.run())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=main, name="agent", daemon=True)
    thread.start()
    wait_until(lambda: agent.started.is_set() or errors, timeout=10, message="agent started")
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(30)
        assert not thread.is_alive(), "agent did not stop within 30 s"
    if errors:
        raise errors[0]


class Subscriber(Listener):
    """A listener that also reads telemetry seq numbers."""

    def seqs(self, topic: str | None = None) -> list[int]:
        return [int(str(doc["seq"])) for doc in self.json(topic)]


def retained(settings: FleetSettings, broker: MosquittoServer, topic: str) -> bytes | None:
    """The retained message of `topic` as a new subscriber gets it (None if there is none)."""
    sub = Subscriber(settings, broker, topic)
    try:
        got = wait_until(
            lambda: sub.payloads(topic, retained=True), timeout=2, message=f"retained {topic}"
        )
    except AssertionError:
        return None
    finally:
        sub.close()
    return got[-1]


def telemetry_topic(device: str, kind: str = "segway", site: str = "allingtown") -> str:
    return wire.telemetry_topic("fleet", site, kind, device)


def availability_topic(device: str, kind: str = "segway", site: str = "allingtown") -> str:
    return wire.availability_topic("fleet", site, kind, device)
