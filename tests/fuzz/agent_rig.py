"""The whole agent around real drivers, for the fuzz runs: counts what the drivers reported
and checks, at the end, that every reading reached the broker and is valid per the contract."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.registry import DriverSpec
from fleet.drivers.base import Driver, DriverSink
from fleet.drivers.readings import Reading
from tests.harness.agent import Subscriber, running_agent, settings_of, write_agent_config
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until


class _CountingSink:
    def __init__(self, sink: DriverSink, counter: Counted) -> None:
        self._sink = sink
        self._counter = counter

    def reading(self, reading: Reading) -> None:
        with self._counter.lock:
            self._counter.readings += 1
        self._sink.reading(reading)

    def availability(self, device: str, online: bool, detail: str = "") -> None:
        self._sink.availability(device, online, detail)

    def advert_seen(self) -> None:
        self._sink.advert_seen()


class Counted:
    """A real driver, with a count of the readings it handed to the agent."""

    kind: ClassVar[str] = "counted"

    def __init__(self, make: Callable[[], Driver]) -> None:
        self._make = make
        self.readings = 0
        self.lock = threading.Lock()
        self.current: Driver | None = None  # the driver of the latest (re)start

    async def run(self, sink: DriverSink) -> None:
        self.current = self._make()
        await self.current.run(_CountingSink(sink, self))


class Refusals(logging.Handler):
    """The agent's log lines about readings it refused (the reason, for a failing example)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "invalid reading" in record.msg:
            self.lines.append(record.getMessage())

    @contextmanager
    def attached(self) -> Iterator[Refusals]:
        logger = logging.getLogger("fleet.daemon.agent.app")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


def spec(name: str, device: str, kind: str, counted: Counted, *, ble: bool) -> DriverSpec:
    return DriverSpec(name, (device,), kind, ble, lambda: counted)


@contextmanager
def running(
    tmp_path: Path, broker: MosquittoServer, specs: list[DriverSpec], counters: list[Counted]
) -> Iterator[Agent]:
    """The agent with `specs`; after it stopped (all sent), what reached the broker is checked."""
    settings = settings_of(write_agent_config(tmp_path, broker))
    subscriber = Subscriber(settings, broker, "fleet/v1/+/+/+/telemetry")
    try:
        with running_agent(Agent(settings, specs=specs)) as agent:
            yield agent
        check_published(agent, subscriber, counters)
    finally:
        subscriber.close()


def check_published(agent: Agent, subscriber: Subscriber, counters: list[Counted]) -> None:
    """Every reading the drivers reported was published, and each one is a valid reading."""
    assert agent.invalid_readings == 0, (
        f"{agent.invalid_readings} reading(s) broke the contract: a driver decoded a value "
        "outside it (see the agent's log for which)"
    )
    for driver in agent.drivers:
        assert driver.failures == 0, f"driver {driver.spec.name} crashed {driver.failures} times"
    produced = sum(c.readings for c in counters)

    def published() -> set[tuple[str, object]]:
        return {
            (m.topic, json.loads(m.payload)["seq"]) for m in subscriber.messages if not m.retain
        }

    wait_until(
        lambda: len(published()) >= produced,
        timeout=60,
        message=f"all {produced} readings published",
    )
    assert len(published()) == produced
    decoder = wire.Decoder(
        prefix="fleet",
        default_site="allingtown",
        kinds=["segway", "handheld"],
        registry={},
        owntracks_map={},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=lambda: int(time.time() * 1000),
    )
    for m in list(subscriber.messages):
        if not m.retain:
            assert isinstance(decoder.decode(m.topic, m.payload), wire.DecodedReading), m.payload
