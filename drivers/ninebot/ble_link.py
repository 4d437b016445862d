"""The scooter's Nordic UART link, plaintext or NinebotCrypto, as one byte pipe for `Exchange`.

Plaintext: request frames are written as they are and notifications go straight to
the Exchange's decoder; a reply with the NinebotCrypto shape sets `encrypted`.

Encrypted: the Exchange still writes plain frames (with their checksum) and still
reads plain frames. On the way out the checksum is cut off and the frame encrypted;
on the way in notifications are reassembled, decrypted and their MAC checked, and
each good frame is re-framed as a plain frame with its checksum and fed to the
Exchange. A frame that fails a check is counted by reason in `refused` and goes no
further, so nothing from it can be published. Handshake replies (`5B`-`5D`) go to
`request` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fleet.drivers.ninebot.crypto import (
    GEN3_HEADER,
    FrameRefused,
    NinebotCrypto,
    Reassembler,
    Refusal,
)
from fleet.drivers.ninebot.frames import NINEBOT_HEADER, checksum, looks_encrypted
from fleet.drivers.ninebot.poll import HOST_BLE
from fleet.drivers.ninebot.session import Exchange

_LOG = logging.getLogger(__name__)

BLE_UNIT = 0x21  # the scooter's BLE board: the handshake's other end
CHUNK = 20  # what the official apps write; safe on the smallest ATT MTU
_MAX_BURST = 512  # longest plausible reply; bounds memory on a babbling device

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reply:
    cmd: int
    arg: int
    payload: bytes


class Link:
    """Routes one connection's notifications; see the module docstring."""

    def __init__(
        self,
        device: str,
        write: Callable[[bytes], Awaitable[None]],
        refused: Counter[Refusal] | None = None,
    ) -> None:
        self._device = device
        self._write = write
        self.exchange: Exchange | None = None
        self.crypto: NinebotCrypto | None = None
        self.encrypted = asyncio.Event()  # a plaintext request got an encrypted-looking reply
        self.gen3 = asyncio.Event()  # a 5A B5 (Segway Encryption2) frame arrived
        self.refused: Counter[Refusal] = Counter() if refused is None else refused
        self._burst = bytearray()
        self._reassembler = Reassembler(_MAX_BURST)
        self._waiting: dict[int, asyncio.Future[Reply]] = {}

    def use_crypto(self, crypto: NinebotCrypto) -> None:
        self.crypto = crypto

    async def send(self, frame: bytes) -> None:
        """Write one plain frame (with checksum), encrypting it on an encrypted link."""
        if self.crypto is not None:
            frame = self.crypto.encrypt(frame[:-2])
        await self._chunks(frame)

    async def _chunks(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            await self._write(data[i : i + CHUNK])

    def on_notify(self, data: bytes | bytearray) -> None:
        if data[:2] == GEN3_HEADER:
            self.gen3.set()
            return
        if self.crypto is None:
            self._plain(data)
            return
        for wire in self._reassembler.feed(data):
            self._decrypted(wire, self.crypto)

    def _plain(self, data: bytes | bytearray) -> None:
        # A notification that starts with the header starts a new reply; the rest
        # continue it. Only the whole reply shows the encrypted length.
        if data[:2] == NINEBOT_HEADER or len(self._burst) > _MAX_BURST:
            self._burst.clear()
        self._burst.extend(data)
        if looks_encrypted(self._burst):
            self.encrypted.set()
        if self.exchange is not None:
            self.exchange.feed(data)

    def _decrypted(self, wire: bytes, crypto: NinebotCrypto) -> None:
        try:
            plain = crypto.decrypt(wire)
        except FrameRefused as refused:
            self.refused[refused.reason] += 1
            if refused.reason is Refusal.GEN3:
                self.gen3.set()
            # The first of each kind is worth a warning; a stream of them is not.
            level = logging.WARNING if self.refused[refused.reason] == 1 else logging.DEBUG
            _LOG.log(level, "%s: encrypted frame refused: %s", self._device, refused)
            return
        src, cmd, arg = plain[3], plain[5], plain[6]
        fut = self._waiting.get(cmd)
        if src == BLE_UNIT and fut is not None:
            if not fut.done():
                fut.set_result(Reply(cmd, arg, plain[7:]))
            return
        if self.exchange is not None:
            self.exchange.feed(plain + checksum(plain[2:]))

    async def request(self, cmd: int, payload: bytes, timeout_s: float) -> Reply | None:
        """One handshake request to the BLE board and its reply (None: none in time)."""
        if self.crypto is None:
            raise RuntimeError("handshake on a plaintext link")
        frame = bytes([*NINEBOT_HEADER, len(payload), HOST_BLE, BLE_UNIT, cmd, 0]) + payload
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._waiting[cmd] = fut
        try:
            await self._chunks(self.crypto.encrypt(frame))
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            if self._waiting.get(cmd) is fut:
                del self._waiting[cmd]


async def until_event(aw: Coroutine[Any, Any, T], *events: asyncio.Event) -> T | None:
    """The result of `aw`, or None if one of `events` is set first (`aw` is then cancelled)."""
    task = asyncio.ensure_future(aw)
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if task in done else None
