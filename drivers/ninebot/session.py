"""One request/reply exchange with a scooter over any byte link (serial tap or BLE UART).

The transport pushes every received byte into `feed`; `poll` sends the cycle's
read requests one at a time (the wired bus is half-duplex and the BLE UART
answers in order) and waits for each reply up to the response timeout. Any
read reply from the ESC or BMS seen on the link updates the register banks,
including replies meant for the dashboard.

A combined read (poll.SCHEDULE: longer than any public capture shows) that a
unit leaves unanswered or answers short `SPLIT_AFTER` cycles in a row, while
the scooter answers otherwise, is replaced for the rest of the link by its
documented smaller reads: an older BMS costs one more exchange a cycle, never
its values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleet.drivers.ninebot.frames import FrameDecoder
from fleet.drivers.ninebot.poll import (
    SCHEDULE,
    ReadRequest,
    encode_read,
    read_reply_source,
    requests_for_cycle,
    split_schedule,
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

_LOG = logging.getLogger(__name__)

SPLIT_AFTER = 3  # cycles in a row a combined read went unanswered while others were answered


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
        *,
        name: str = "",
    ) -> None:
        self._name = name  # the device, for the log
        self._model = model
        self._host = host
        self._send = send
        self._timeout = response_timeout_s
        self._schedule = schedule
        self.decoder = FrameDecoder(timeout_s=response_timeout_s)
        self.banks = {Target.ESC: RegisterBank(), Target.BMS: RegisterBank()}
        # Each future gets the payload length of its reply, or -1 at the timeout.
        self._waiting: dict[tuple[Target, int], asyncio.Future[int]] = {}
        self._short: dict[ReadRequest, int] = {}  # combined read -> cycles in a row short
        self.split: list[ReadRequest] = []  # combined reads given up on this link
        self._encoded: dict[ReadRequest, bytes] = {}

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes from the link, in arrival order and in pieces of any size."""
        for frame in self.decoder.feed(data):
            unit = read_reply_source(frame)
            if unit is None:
                continue
            self.banks[unit].absorb(frame.arg, frame.payload)
            fut = self._waiting.get((unit, frame.arg))
            if fut is not None:
                _settle(fut, len(frame.payload))

    def reset(self) -> None:
        """The link was (re)opened: nothing known from before counts."""
        self.decoder.reset()
        for bank in self.banks.values():
            bank.clear()

    async def poll(self, cycle: int) -> PollResult:
        asked = answered = 0
        combined: list[tuple[ReadRequest, int]] = []
        for req in requests_for_cycle(cycle, self._schedule):
            asked += 1
            got = await self._ask(req)
            answered += got >= 0
            if req.split:
                combined.append((req, got))
        for req, got in combined:
            self._judge_combined(req, got, others_answered=answered - (got >= 0) > 0)
        return PollResult(
            asked,
            answered,
            decode_esc(self.banks[Target.ESC].words, self._model),
            decode_bms(self.banks[Target.BMS].words, self._model),
        )

    def _judge_combined(self, req: ReadRequest, got: int, *, others_answered: bool) -> None:
        if got >= req.nbytes:
            self._short.pop(req, None)
            return
        if not others_answered:
            return  # the whole scooter is silent (off, unplugged): says nothing about sizes
        short = self._short.get(req, 0) + 1
        self._short[req] = short
        if short < SPLIT_AFTER:
            return
        del self._short[req]
        self._schedule = split_schedule(self._schedule, req)
        self.split.append(req)
        _LOG.info(
            "%s: the %s answers no %d-byte read of %#x..%#x (%d cycles): asking %s instead",
            self._name or "scooter",
            req.target.name,
            req.nbytes,
            req.reg,
            req.last_reg,
            SPLIT_AFTER,
            " + ".join(f"{p.reg:#x} ({p.nbytes} bytes)" for p in req.split),
        )

    def _request_bytes(self, req: ReadRequest) -> bytes:
        # The same few requests every cycle: encoded once per link.
        data = self._encoded.get(req)
        if data is None:
            data = self._encoded[req] = encode_read(req, self._model, self._host)
        return data

    async def _ask(self, req: ReadRequest) -> int:
        """Send one read; the payload length of its reply, -1 when none came in time."""
        key = (req.target, req.reg)
        loop = asyncio.get_running_loop()
        # A future with a timer instead of wait_for: no extra task per request,
        # which matters with a hundred scooters polled every second.
        fut: asyncio.Future[int] = loop.create_future()
        timer = loop.call_later(self._timeout, _settle, fut, -1)
        self._waiting[key] = fut
        try:
            await self._send(self._request_bytes(req))
            answered = await fut
        finally:
            timer.cancel()
            if self._waiting.get(key) is fut:
                del self._waiting[key]
        if answered < 0:
            self.decoder.expire()
        if answered < req.nbytes:
            # Words this read did not bring back are forgotten, so an unanswered read
            # leaves them empty instead of republishing stale values; registers read
            # rarely (firmware, cells) keep their last value between their reads.
            words = self.banks[req.target].words
            for reg in range(req.reg + max(answered, 0) // 2, req.last_reg + 1):
                words.pop(reg, None)
        return answered


def _settle(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
