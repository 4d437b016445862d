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
from typing import ClassVar, Protocol

import serial

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.poll import HOST_SERIAL, poll_interval, until_next_tick
from fleet.drivers.ninebot.registers import MODELS
from fleet.drivers.ninebot.session import Exchange, PollResult

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


__all__ = ["NinebotSerial", "PortLink", "open_port", "until_next_tick"]


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
            self.fail(exc)
            return
        if not data:
            self.fail(ConnectionError("end of stream"))
            return
        try:
            self._consume(data)
        except Exception as exc:  # noqa: BLE001 - a bug: ends the session, re-raised there
            self.fail(exc)

    def write(self, data: bytes) -> None:
        if self.lost.done():
            raise ConnectionError("serial port closed")
        try:
            sent = os.write(self._fd, data)
        except OSError as exc:  # BlockingIOError included
            self.fail(exc)
            raise
        if sent != len(data):
            short = ConnectionError(f"serial port took {sent} of {len(data)} bytes")
            self.fail(short)
            raise short

    def fail(self, exc: BaseException) -> None:
        """The link is broken (`exc` says how): reading stops, `lost` resolves."""
        self._loop.remove_reader(self._fd)
        if not self.lost.done():
            self.lost.set_result(exc)

    def close(self) -> None:
        self.fail(ConnectionError("closed"))
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
        tick_delay: Callable[[float, float, float], float] = until_next_tick,
    ) -> None:
        # (cycle start, now, interval) -> seconds to the next cycle; tests see the interval.
        self._tick_delay = tick_delay
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
        cfg = self._config

        async def send(data: bytes) -> None:  # Exchange.poll's form; the cycles use `start`
            link.write(data)

        exchange = Exchange(self._model, HOST_SERIAL, send, cfg.response_timeout_s, name=cfg.device)
        try:
            link = PortLink(port, exchange.feed)
        except BaseException:
            port.close()
            raise
        cycles = _Cycles(self, exchange, link, sink)
        try:
            cycles.begin()
            # Everything else happens in callbacks (the port's reader, the timers) until
            # the port fails or a callback does: `lost` then holds why. Not awaited itself,
            # so that cancelling the driver does not cancel it.
            await asyncio.wait([link.lost])
        finally:
            cycles.stop()
            link.close()
        # A port error (OSError) reopens the port; anything else is a bug, for the supervisor.
        raise link.lost.result()

    def _cycle_done(self, result: PollResult, sink: DriverSink, misses: int) -> tuple[float, int]:
        """A cycle's result reported; returns the interval to the next one and the misses."""
        cfg = self._config
        self.cycles += 1
        state = None
        if result.answered:
            misses = 0
            self._backoff.reset()
            self._set_online(sink, True, "")
            reading = result.reading(cfg.device, self._clock())
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
        return interval, misses

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            _LOG.info("%s: scooter answering on %s", self._config.device, self._config.port)
        else:
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        sink.availability(self._config.device, online, detail)


class _Cycles:
    """One port's poll cycles, driven by the loop's callbacks: the next cycle starts from a
    timer on the shared tick, its requests go out from the port's reader (Exchange.start)."""

    def __init__(
        self, driver: NinebotSerial, exchange: Exchange, link: PortLink, sink: DriverSink
    ) -> None:
        self._driver, self._exchange, self._link, self._sink = driver, exchange, link, sink
        self._loop = asyncio.get_running_loop()
        self._cycle = 0
        self._misses = 0
        self._started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        self._timer = None
        self._started = self._loop.time()
        try:
            self._exchange.start(self._cycle, self._link.write, self._done, self._link.fail)
        except Exception as exc:  # noqa: BLE001 - the session's `lost` carries it
            self._link.fail(exc)

    def _done(self, result: PollResult) -> None:
        self._cycle += 1
        interval, self._misses = self._driver._cycle_done(result, self._sink, self._misses)
        now = self._loop.time()
        delay = self._driver._tick_delay(self._started, now, interval)
        self._timer = self._loop.call_at(now + delay, self.begin)

    def stop(self) -> None:
        self._exchange.stop()
        if self._timer is not None:
            self._timer.cancel()
