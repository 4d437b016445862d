"""`ninebot_serial` driver: polls a Ninebot / Xiaomi scooter over a wired UART tap (115200 8N1).

Every `poll_interval_s` the driver reads the ESC quick block, the remaining
range and the BMS status block (cells and firmware less often), and reports one
Reading per cycle that got any answer. It only ever sends register reads.

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
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import serial_asyncio_fast

from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverSink
from fleet.drivers.ninebot.config import NinebotSerialConfig
from fleet.drivers.ninebot.poll import HOST_SERIAL
from fleet.drivers.ninebot.registers import MODELS, to_reading
from fleet.drivers.ninebot.session import Exchange

_LOG = logging.getLogger(__name__)

_READ_SIZE = 512

OpenSerial = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def _open_serial(
    port: str, baudrate: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=port, baudrate=baudrate)
    return reader, writer


class NinebotSerial:
    """Polls one scooter on one serial port; see the module docstring."""

    kind: ClassVar[str] = "ninebot_serial"

    def __init__(
        self,
        config: NinebotSerialConfig,
        *,
        clock: Callable[[], int] = _wall_ms,
        open_serial: OpenSerial = _open_serial,
    ) -> None:
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
                reader, writer = await self._open(cfg.port, cfg.baudrate)
            except OSError as exc:  # serial.SerialException is an OSError too
                self._set_online(sink, False, f"cannot open {cfg.port}: {exc}")
                await asyncio.sleep(self._backoff.next())
                continue
            _LOG.info("%s: opened %s", cfg.device, cfg.port)
            try:
                await self._session(reader, writer, sink)
            except (OSError, ConnectionError) as exc:
                self._set_online(sink, False, f"serial port {cfg.port} lost: {exc}")
            finally:
                writer.close()
            await asyncio.sleep(self._backoff.next())

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sink: DriverSink
    ) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        exchange = Exchange(self._model, HOST_SERIAL, send, self._config.response_timeout_s)
        pump = asyncio.create_task(self._pump(reader, exchange))
        poller = asyncio.create_task(self._poll_loop(exchange, sink))
        try:
            done, _ = await asyncio.wait({pump, poller}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, poller):
                task.cancel()
            await asyncio.gather(pump, poller, return_exceptions=True)
        for task in done:
            task.result()  # re-raises the failure that ended the session

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, exchange: Exchange) -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ConnectionError("end of stream")
            exchange.feed(data)

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
            if result.answered:
                misses = 0
                self._backoff.reset()
                self._set_online(sink, True, "")
                reading = to_reading(cfg.device, self._clock(), result.esc, result.bms)
                if reading is not None:
                    sink.reading(reading)
            else:
                misses += 1
                if misses >= cfg.offline_after_misses:
                    self._set_online(
                        sink, False, f"no reply from the scooter on {cfg.port} ({misses} polls)"
                    )
            await asyncio.sleep(max(0.0, started + cfg.poll_interval_s - loop.time()))

    def _set_online(self, sink: DriverSink, online: bool, detail: str) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            _LOG.info("%s: scooter answering on %s", self._config.device, self._config.port)
        else:
            _LOG.warning("%s: offline: %s", self._config.device, detail)
        sink.availability(self._config.device, online, detail)
