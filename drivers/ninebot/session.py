"""One request/reply exchange with a scooter over any byte link (serial tap or BLE UART).

The transport pushes every received byte into `feed`; `poll` sends the cycle's
read requests one at a time (the wired bus is half-duplex and the BLE UART
answers in order) and waits for each reply up to the response timeout. Any
read reply from the ESC or BMS seen on the link updates the register banks,
including replies meant for the dashboard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleet.drivers.ninebot.frames import FrameDecoder
from fleet.drivers.ninebot.poll import (
    SCHEDULE,
    ReadRequest,
    encode_read,
    read_reply_source,
    requests_for_cycle,
)
from fleet.drivers.ninebot.registers import (
    BmsTelemetry,
    EscTelemetry,
    ModelProfile,
    RegisterBank,
    Target,
    decode_bms,
    decode_esc,
)


@dataclass(frozen=True, slots=True)
class PollResult:
    asked: int
    answered: int
    esc: EscTelemetry
    bms: BmsTelemetry


class Exchange:
    def __init__(
        self,
        model: ModelProfile,
        host: int,
        send: Callable[[bytes], Awaitable[None]],
        response_timeout_s: float,
        schedule: tuple[ReadRequest, ...] = SCHEDULE,
    ) -> None:
        self._model = model
        self._host = host
        self._send = send
        self._timeout = response_timeout_s
        self._schedule = schedule
        self.decoder = FrameDecoder(timeout_s=response_timeout_s)
        self.banks = {Target.ESC: RegisterBank(), Target.BMS: RegisterBank()}
        self._waiting: dict[tuple[Target, int], asyncio.Future[bool]] = {}

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes from the link, in arrival order and in pieces of any size."""
        for frame in self.decoder.feed(data):
            unit = read_reply_source(frame)
            if unit is None:
                continue
            self.banks[unit].absorb(frame.arg, frame.payload)
            fut = self._waiting.get((unit, frame.arg))
            if fut is not None:
                _settle(fut, True)

    def reset(self) -> None:
        """The link was (re)opened: nothing known from before counts."""
        self.decoder.reset()
        for bank in self.banks.values():
            bank.clear()

    async def poll(self, cycle: int) -> PollResult:
        asked = answered = 0
        for req in requests_for_cycle(cycle, self._schedule):
            asked += 1
            answered += await self._ask(req)
        return PollResult(
            asked,
            answered,
            decode_esc(self.banks[Target.ESC].words, self._model),
            decode_bms(self.banks[Target.BMS].words, self._model),
        )

    async def _ask(self, req: ReadRequest) -> bool:
        bank = self.banks[req.target]
        # Words of this request are forgotten first, so an unanswered read leaves
        # them empty instead of republishing stale values; registers read rarely
        # (firmware, cells) keep their last value between their reads.
        for reg in range(req.reg, req.reg + req.nbytes // 2):
            bank.words.pop(reg, None)
        key = (req.target, req.reg)
        loop = asyncio.get_running_loop()
        # A future with a timer instead of wait_for: no extra task per request,
        # which matters with a hundred scooters polled every second.
        fut: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(self._timeout, _settle, fut, False)
        self._waiting[key] = fut
        try:
            await self._send(encode_read(req, self._model, self._host))
            answered = await fut
        finally:
            timer.cancel()
            if self._waiting.get(key) is fut:
                del self._waiting[key]
        if not answered:
            self.decoder.expire()
        return answered


def _settle(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)
