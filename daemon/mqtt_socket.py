"""paho's socket read through a buffer, and paho's reading paused while its owner is behind.

paho reads each packet with three or four `recv()` calls (its type byte, each byte of its
length, then the rest) and one `select()` per packet, and every one of them releases and
retakes the interpreter lock - which, with the collector's other threads wanting it, is
where paho's network thread spent most of its time (a py-spy profile of a 30,000-message
drain: `_sock_recv`, `select` and `_sock_send` were 55 % of that thread's samples).
`ReadBuffered` makes it one `recv()` of up to 64 KiB for as many packets as it holds, and
`BufferedReads.loop_read` reads on while whole packets are already buffered.

Reading fast must not mean holding more, and the broker's window does not bound it: draining
a 50,000-message backlog with acknowledgements flowing, Mosquitto 2.0.11 had 41,000
unacknowledged messages out to the collector against a receive maximum of 10,000 (one that
acknowledged nothing got exactly 10,000). So the owner's queue is the bound:
`BufferedReads.read_gate` is asked before every read; while it says no, nothing is read and
the broker's messages wait in the socket and at the broker (daemon/mqtt_inbox.py is the
collector's gate).

Imports nothing from paho (daemon/mqtt.py, the one module that does, mixes it in).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

CHUNK = 65536  # one recv(): a few hundred telemetry messages
BURST = 500  # most packets read from the buffer in one turn of paho's loop

# Called on paho's network thread before it reads: True to read, False after waiting up to
# the given seconds for room (paho then writes what is queued and keeps the link alive).
ReadGate = Callable[[float], bool]
GATE_WAIT_S = 0.05

PUBACK = 0x40  # MQTT's PUBACK packet type (4) in the high nibble
_PUBACK = struct.Struct("!BBH")  # without reason code (success): type, length 2, packet id


def pubacks(mids: Sequence[int]) -> bytes:
    """The PUBACKs of these packet ids, one after another: what paho's `ack` queues for each
    (`_send_command_with_mid`), as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


class ReadBuffered:
    """A socket (plain or TLS) whose `recv` is served from one large read."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            # Raises as the socket does when nothing is there (BlockingIOError, SSLWantRead).
            buf = bytes(self._sock.recv(CHUNK))
            if not buf:
                return buf  # the peer closed: paho sees b"" as it would have
            self._buf, pos = buf, 0
        part = buf[pos : pos + size]
        self._pos = pos + len(part)
        return part

    def pending(self) -> int:
        """Bytes readable without the socket: paho's loop then reads without waiting in
        select(), as it already does for bytes a TLS socket has decrypted."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def send(self, data: Any) -> int:
        return int(self._sock.send(data))

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        # setblocking, setsockopt, getpeername...: the socket's own.
        return getattr(self._sock, name)


class NoFilters:
    """Stands in for paho's topic matcher of per-filter callbacks, which the link never adds
    (it hands every message to its one sink): paho walks it for every message (~8 µs a
    message, 18 % of paho's share of the interpreter lock in the drain's profile)."""

    def iter_match(self, topic: str) -> tuple[()]:
        return ()

    def __setitem__(self, key: str, value: object) -> None:
        raise NotImplementedError("the MQTT link hands every message to its one sink")

    def __delitem__(self, key: str) -> None:
        raise KeyError(key)


class BufferedReads:
    """Mixed in before paho's Client: its socket is `ReadBuffered`, its reads gated."""

    read_gate: ReadGate | None = None
    read_pauses = 0  # turns of paho's loop that did not read because the gate said no
    _READ_OK: Any = 0  # paho's MQTT_ERR_SUCCESS, set by daemon/mqtt.py

    def _create_socket(self) -> Any:
        return ReadBuffered(super()._create_socket())  # type: ignore[misc]

    def loop_read(self, max_packets: int = 1) -> Any:
        gate = self.read_gate
        if gate is not None and not gate(GATE_WAIT_S):
            self.read_pauses += 1
            return self._READ_OK
        read: Callable[[int], Any] = super().loop_read  # type: ignore[misc]
        socket: Callable[[], Any] = self.socket  # type: ignore[attr-defined]
        rc = read(max_packets)
        for _ in range(BURST):
            sock = socket()
            if rc or sock is None or not sock.pending():
                break
            if gate is not None and not gate(0.0):
                break
            rc = read(max_packets)
        return rc
