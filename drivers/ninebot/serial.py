"""`ninebot_serial` driver: polls a Ninebot / Xiaomi scooter over a wired UART tap (115200 8N1).

Every poll interval the driver reads the ESC quick block and the BMS status and
cell block (poll.SCHEDULE: two exchanges a cycle, firmware and range every
10th), and reports one Reading per cycle that got any answer. It only ever
sends register reads. The interval follows the last reading's state
(poll.poll_interval): `poll_interval_s` while the scooter moves, is faulted or
says nothing, `idle_poll_interval_s` while it stands, `charging_poll_interval_s`
while it charges - a docked scooter costs a tenth of a moving one, and a change
(ridden away, unplugged) is seen within one slow interval.

Availability: online as soon as the scooter answers; offline after
`offline_after_misses` silent cycles (scooter off, cable unplugged) or when the
port itself fails. A failed or vanished port is reopened here with capped
exponential backoff rather than by raising: an unplugged USB adapter is an
everyday condition, not a driver bug, and must not use up the agent's restart
budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import serial

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.poll import HOST_SERIAL, poll_interval
from fleet.drivers.ninebot.registers import MODELS, to_reading
from fleet.drivers.ninebot.session import Exchange

_LOG = logging.getLogger(__name__)

_READ_SIZE = 512


class SerialPort(Protocol):
    """What the driver needs of an open port: its descriptor (non-blocking) and a close."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


OpenSerial = Callable[[str, int], Awaitable[SerialPort]]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def open_port(port: str, baudrate: int) -> SerialPort:
    """The port opened and set up (raw 8N1) by pyserial, non-blocking.

    pyserial only opens it: reads and writes then go to the descriptor on the
    event loop (`PortLink`). pyserial's own read() costs a select() and a timeout
    object per call, and a stream reader a task wake-up per chunk: with a hundred
    scooters those were a good part of the agent's CPU. Opened off the loop: a
    wedged USB adapter can block in open().
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: serial.Serial(port, baudrate, timeout=0))


def until_next_tick(started: float, now: float, interval: float) -> float:
    """Seconds from `now` to the first multiple of `interval` after `started` (0 if past).

    On the loop's monotonic clock: every driver of the agent polling at the same
    interval starts its cycles at the same instants, so the event loop wakes once
    a tick for all of them instead of once per scooter, and their readings reach
    the outbox together - one transaction (one fsync) and one publish round for
    all. Each scooter is on its own port, so nothing on the wire changes. A cycle
    that overran its interval is followed at once, as before the ticks.
    """
    return max(0.0, started - started % interval + interval - now)


async def _wait_tick(interval: float, started: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(until_next_tick(started, loop.time(), interval))


class PortLink:
    """Bytes of an open port straight into a consumer; `lost` resolves when the port fails.

    Writes go out at once: a request is a dozen bytes on an idle half-duplex bus,
    so a port that cannot take them now (EAGAIN, a short write) is a broken link,
    reopened like a vanished one, never a queue that grows.
    """

    def __init__(self, port: SerialPort, consume: Callable[[bytes], None]) -> None:
        self._port = port
        self._fd = port.fileno()
        self._consume = consume
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[BaseException] = self._loop.create_future()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(ConnectionError("end of stream"))
            return
        try:
            self._consume(data)
        except Exception as exc:  # noqa: BLE001 - a bug: ends the session, re-raised there
            self._fail(exc)

    def write(self, data: bytes) -> None:
        if self.lost.done():
            raise ConnectionError("serial port closed")
        try:
            sent = os.write(self._fd, data)
        except OSError as exc:  # BlockingIOError included
            self._fail(exc)
            raise
        if sent != len(data):
            short = ConnectionError(f"serial port took {sent} of {len(data)} bytes")
            self._fail(short)
            raise short

    def _fail(self, exc: BaseException) -> None:
        self._loop.remove_reader(self._fd)
        if not self.lost.done():
            self.lost.set_result(exc)

    def close(self) -> None:
        self._fail(ConnectionError("closed"))
        self._port.close()


class NinebotSerial:
    """Polls one scooter on one serial port; see the module docstring."""

    kind: ClassVar[str] = "ninebot_serial"

    def __init__(
        self,
        config: NinebotSerialConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        open_serial: OpenSerial = open_port,
        wait_tick: Callable[[float, float], Awaitable[None]] | None = None,
    ) -> None:
        # (interval, cycle start) -> waits for the next tick; tests see the interval chosen.
        self._wait_tick = wait_tick or _wait_tick
        self._config = config
        self._clock = clock
        self._open = open_serial
        self._model = MODELS[config.model]
        self._online: bool | None = None
        self._backoff = Backoff(
            config.reopen_backoff_initial_s, config.reopen_backoff_max_s
        ).counter()
        self.cycles = 0  # for tests and the bench: completed poll cycles

    async def run(self, sink: DriverSink) -> None:
        cfg = self._config
        while True:
            try:
                port = await self._open(cfg.port, cfg.baudrate)
            except OSError as exc:  # serial.SerialException is an OSError too
                self._set_online(sink, False, f"cannot open {cfg.port}: {exc}")
                await asyncio.sleep(self._backoff.next())
                continue
            _LOG.info("%s: opened %s", cfg.device, cfg.port)
            try:
                await self._session(port, sink)
            except (OSError, ConnectionError) as exc:
                self._set_online(sink, False, f"serial port {cfg.port} lost: {exc}")
            await asyncio.sleep(self._backoff.next())

    async def _session(self, port: SerialPort, sink: DriverSink) -> None:
        link: PortLink | None = None

        async def send(data: bytes) -> None:
            assert link is not None
            link.write(data)

        exchange = Exchange(
            self._model,
            HOST_SERIAL,
            send,
            self._config.response_timeout_s,
            name=self._config.device,
        )
        try:
            link = PortLink(port, exchange.feed)
        except BaseException:
            port.close()
            raise
        poller = asyncio.create_task(self._poll_loop(exchange, sink))
        try:
            either: list[asyncio.Future[Any]] = [poller, link.lost]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            link.close()
        if not poller.cancelled() and (failure := poller.exception()) is not None:
            raise failure  # a write that failed, or a bug: re-raised as before
        # A port error (OSError) reopens the port; anything else is a bug, for the supervisor.
        raise link.lost.result()

    async def _poll_loop(self, exchange: Exchange, sink: DriverSink) -> None:
        cfg = self._config
        loop = asyncio.get_running_loop()
        misses = 0
        cycle = 0
        while True:
            started = loop.time()
            result = await exchange.poll(cycle)
            cycle += 1
            self.cycles += 1
            state = None
            if result.answered:
                misses = 0
                self._backoff.reset()
                self._set_online(sink, True, "")
                reading = to_reading(cfg.device, self._clock(), result.esc, result.bms)
                if reading is not None:
                    sink.reading(reading)
                    state = reading.status.state if reading.status is not None else None
            else:
                misses += 1
                if misses >= cfg.offline_after_misses:
                    self._set_online(
                        sink, False, f"no reply from the scooter on {cfg.port} ({misses} polls)"
                    )
            interval = poll_interval(
                state,
                riding_s=cfg.poll_interval_s,
                idle_s=cfg.idle_poll_interval_s,
                charging_s=cfg.charging_poll_interval_s,
            )
            await self._wait_tick(interval, started)

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            _LOG.info("%s: scooter answering on %s", self._config.device, self._config.port)
        else:
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        sink.availability(self._config.device, online, detail)
