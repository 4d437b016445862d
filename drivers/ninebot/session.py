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

Two ways to run a cycle, one logic. `poll` is a coroutine: one future and one
timer per request, for a link whose writes are themselves awaited (BLE). `start`
is the callback form for a link whose writes go out at once (the serial port):
the reply's frame, seen in `feed` (the port's reader callback), sends the next
request and the last one hands the cycle's result over - no task, future or
wake-up per request, which with a hundred scooters polled every second was a
good part of the agent's CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

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
    reading_from_words,
)
from fleet.drivers.readings import Reading

_LOG = logging.getLogger(__name__)

SPLIT_AFTER = 3  # cycles in a row a combined read went unanswered while others were answered


class PollResult:
    """One poll cycle: requests asked and answered, and the units' words as they stood after it.

    `reading` decodes the words straight into the v1 reading (registers.reading_from_words);
    `esc` and `bms`, the units' decoded views, are decoded when asked for (tests, tools).
    """

    __slots__ = ("_bms_words", "_esc_words", "_model", "answered", "asked")

    def __init__(
        self,
        asked: int,
        answered: int,
        esc_words: Mapping[int, int],
        bms_words: Mapping[int, int],
        model: ModelProfile,
    ) -> None:
        self.asked, self.answered = asked, answered
        # Copies: the banks change with the next reply, a result does not.
        self._esc_words, self._bms_words = dict(esc_words), dict(bms_words)
        self._model = model

    @property
    def esc(self) -> EscTelemetry:
        return decode_esc(self._esc_words, self._model)

    @property
    def bms(self) -> BmsTelemetry:
        return decode_bms(self._bms_words, self._model)

    def reading(self, device: str, ts_ms: int) -> Reading | None:
        """The v1 reading of this cycle (`to_reading` of `esc` and `bms`), None if empty."""
        return reading_from_words(device, ts_ms, self._esc_words, self._bms_words, self._model)


class _NoTimer:
    def cancel(self) -> None:
        return None


_NO_TIMER = _NoTimer()


class _Run:
    """A callback cycle under way: its requests, which one is out, what came back."""

    __slots__ = (
        "answered", "at", "combined", "done", "fail", "got", "key", "requests", "send", "timer",
    )  # fmt: skip

    def __init__(
        self,
        requests: list[ReadRequest],
        send: Callable[[bytes], None],
        done: Callable[[PollResult], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        self.requests, self.send, self.done, self.fail = requests, send, done, fail
        self.at = self.answered = 0
        self.combined: list[tuple[ReadRequest, int]] = []
        self.key: tuple[Target, int] | None = None
        self.got: int | None = None  # the reply's payload length, -1: none in time
        self.timer: asyncio.TimerHandle | _NoTimer = _NO_TIMER


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
        self._run: _Run | None = None  # the callback cycle under way (`start`)

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes from the link, in arrival order and in pieces of any size."""
        for frame in self.decoder.feed(data):
            unit = read_reply_source(frame)
            if unit is None:
                continue
            self.banks[unit].absorb(frame.arg, frame.payload)
            key = (unit, frame.arg)
            fut = self._waiting.get(key)
            if fut is not None:
                _settle(fut, len(frame.payload))
            run = self._run
            if run is not None and run.key == key and run.got is None:
                run.got = len(frame.payload)
        # The next request goes out once this chunk is read, as it would after a task's
        # wake-up: a later frame of the chunk never counts as the next request's reply.
        run = self._run
        if run is not None and run.got is not None:
            run.timer.cancel()
            self._answered(run)

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
        return self._result(asked, answered, combined)

    def _result(
        self, asked: int, answered: int, combined: list[tuple[ReadRequest, int]]
    ) -> PollResult:
        for req, got in combined:
            self._judge_combined(req, got, others_answered=answered - (got >= 0) > 0)
        return PollResult(
            asked,
            answered,
            self.banks[Target.ESC].words,
            self.banks[Target.BMS].words,
            self._model,
        )

    # --- the callback form ----------------------------------------------------------------------

    def start(
        self,
        cycle: int,
        send: Callable[[bytes], None],
        done: Callable[[PollResult], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        """`poll(cycle)` driven by callbacks: `send` writes a request at once, `done` gets
        the result. Call from the loop, one cycle at a time. An exception of `send` or
        `done` raised in `feed` goes to its caller (the port's reader, which fails the
        link with it); one raised at a timeout goes to `fail`."""
        if self._run is not None:
            raise RuntimeError("a cycle is under way")
        run = _Run(requests_for_cycle(cycle, self._schedule), send, done, fail)
        self._run = run
        self._next(run)

    def stop(self) -> None:
        """Abandon the cycle under way (the link is closing): no callback comes after this."""
        run, self._run = self._run, None
        if run is not None:
            run.timer.cancel()

    def _next(self, run: _Run) -> None:
        if run.at == len(run.requests):
            self._run = None
            run.done(self._result(run.at, run.answered, run.combined))
            return
        req = run.requests[run.at]
        run.key, run.got = (req.target, req.reg), None
        run.timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out, run)
        run.send(self._request_bytes(req))

    def _timed_out(self, run: _Run) -> None:
        if self._run is not run:
            return
        run.got = -1
        try:
            self._answered(run)
        except Exception as exc:  # noqa: BLE001 - handed to the link's owner, not lost in the loop
            self.stop()
            run.fail(exc)

    def _answered(self, run: _Run) -> None:
        req, got = run.requests[run.at], run.got
        assert got is not None
        self._after(req, got)
        run.answered += got >= 0
        if req.split:
            run.combined.append((req, got))
        run.at += 1
        self._next(run)

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
        self._after(req, answered)
        return answered

    def _after(self, req: ReadRequest, answered: int) -> None:
        """A request's reply came (its payload length) or did not (-1)."""
        if answered < 0:
            self.decoder.expire()
        if answered < req.nbytes:
            # Words this read did not bring back are forgotten, so an unanswered read
            # leaves them empty instead of republishing stale values; registers read
            # rarely (firmware, cells) keep their last value between their reads.
            words = self.banks[req.target].words
            for reg in range(req.reg + max(answered, 0) // 2, req.last_reg + 1):
                words.pop(reg, None)


def _settle(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
