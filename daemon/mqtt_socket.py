"""paho's socket read through a buffer, and paho's reading paused while its owner is behind.

paho reads each packet with three or four `recv()` calls (its type byte, each byte of its
length, then the rest) and one `select()` per packet, and every one of them releases and
retakes the interpreter lock - which, with the collector's other threads wanting it, is
where paho's network thread spent most of its time (a py-spy profile of a 30,000-message
drain: `_sock_recv`, `select` and `_sock_send` were 55 % of that thread's samples).
`ReadBuffered` makes it one `recv()` of up to 64 KiB for as many packets as it holds, and
`BufferedReads.loop_read` reads on while whole packets are already buffered.

Most of what the collector receives is one kind of packet: a PUBLISH at QoS 0 or 1 without
MQTT 5 properties. paho spends ~22 µs of Python on each (its reader's state dictionary, the
per-byte length, `MQTTMessage`, its callback dispatch: `tests/bench/bench_paho_read.py`);
`ReadBuffered.take_publish` reads such a packet whole from the buffer in ~6 µs and hands it
to the owner's `publish_sink`. Anything else - properties, QoS 2, a packet not yet wholly
buffered, a topic that is not UTF-8, a malformed length - is left in the buffer for paho,
which then decides as before (a protocol error drops the link). Packets are taken in order
from one buffer either way, so the order the broker sent is the order delivered.

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

import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

_LOG = logging.getLogger(__name__)

CHUNK = 65536  # one recv(): a few hundred telemetry messages
BURST = 500  # most packets read from the buffer in one turn of paho's loop

# Called on paho's network thread before it reads: True to read, False after waiting up to
# the given seconds for room (paho then writes what is queued and keeps the link alive).
ReadGate = Callable[[float], bool]
GATE_WAIT_S = 0.05

PUBACK = 0x40  # MQTT's PUBACK packet type (4) in the high nibble
_PUBLISH = 0x30  # PUBLISH (3) in the high nibble; the low one is DUP, QoS (2 bits), RETAIN
_MQTT5 = 5  # the protocol level of MQTT 5 in CONNECT (paho's MQTTv5)
_PUBACK = struct.Struct("!BBH")  # without reason code (success): type, length 2, packet id


def pubacks(mids: Sequence[int]) -> bytes:
    """The PUBACKs of these packet ids, one after another: what paho's `ack` queues for each
    (`_send_command_with_mid`), as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


class Publish(NamedTuple):
    """A plain PUBLISH, as `ReadBuffered.take_publish` read it."""

    topic: str
    payload: bytes
    qos: int
    mid: int  # 0 at QoS 0
    retain: bool


PublishSink = Callable[[Publish], None]


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

    def take_publish(self, v5: bool) -> Publish | None:
        """The next packet if it is wholly buffered and a plain PUBLISH (QoS 0 or 1, MQTT 5
        property length 0, UTF-8 topic); else None and nothing taken, for paho to read."""
        buf, start = self._buf, self._pos
        end = len(buf)
        if end - start < 2 or buf[start] & 0xF0 != _PUBLISH:
            return None
        header = buf[start]
        qos = (header >> 1) & 3
        if qos > 1:
            return None
        pos, length, shift = start + 1, 0, 0
        while True:  # the remaining length: 7 bits a byte, at most four bytes
            if pos >= end or shift > 21:
                return None
            byte = buf[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        stop = pos + length
        if stop > end or length < 2:
            return None
        topic_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        body = topic_end + 2 if qos else topic_end  # after the packet id
        if v5:
            if body >= stop or buf[body] != 0:
                return None  # properties (or none at all): paho's to decode
            body += 1
        if body > stop or topic_end == pos + 2:
            return None  # the topic runs past the packet, or is empty (an MQTT 5 alias)
        try:
            topic = buf[pos + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
        self._pos = stop
        return Publish(topic, buf[body:stop], qos, mid, bool(header & 0x01))

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
    """Mixed in before paho's Client: its socket is `ReadBuffered`, its reads gated, plain
    PUBLISH packets taken from the buffer straight to `publish_sink`."""

    read_gate: ReadGate | None = None
    read_pauses = 0  # turns of paho's loop that did not read because the gate said no
    # Plain PUBLISH packets go here, acknowledged by the owner (only with manual acks: paho
    # would acknowledge what it reads itself). None: paho reads every packet.
    publish_sink: PublishSink | None = None
    _READ_OK: Any = 0  # paho's MQTT_ERR_SUCCESS, set by daemon/mqtt.py
    _log: logging.Logger | None = None  # paho's logger; at DEBUG paho reads (and logs) all

    def _create_socket(self) -> Any:
        return ReadBuffered(super()._create_socket())  # type: ignore[misc]

    def loop_read(self, max_packets: int = 1) -> Any:
        gate = self.read_gate
        if gate is not None and not gate(GATE_WAIT_S):
            self.read_pauses += 1
            return self._READ_OK
        read: Callable[[int], Any] = super().loop_read  # type: ignore[misc]
        socket: Callable[[], Any] = self.socket  # type: ignore[attr-defined]
        rc, budget = self._READ_OK, BURST
        while True:
            sock = socket()
            if sock is None:
                return rc
            budget -= self._take_publishes(sock, gate, budget)
            if budget <= 0 or (gate is not None and not gate(0.0)):
                return rc
            rc = read(max_packets)  # the next packet, or the next recv() for an empty buffer
            budget -= 1
            if rc or budget <= 0 or not sock.pending():
                return rc

    def _take_publishes(self, sock: Any, gate: ReadGate | None, most: int) -> int:
        """Plain PUBLISH packets from the buffer to `publish_sink`, while the gate allows;
        how many."""
        sink = self.publish_sink
        log = self._log
        if (
            sink is None
            or not isinstance(sock, ReadBuffered)
            or self._in_packet["command"]  # type: ignore[attr-defined]  # paho's half-read packet
            or (log is not None and log.isEnabledFor(logging.DEBUG))
        ):
            return 0
        v5 = self._protocol == _MQTT5  # type: ignore[attr-defined]
        take = sock.take_publish
        taken = 0
        while taken < most:
            if gate is not None and not gate(0.0):
                break
            message = take(v5)
            if message is None:
                break
            taken += 1
            # As paho calls on_message (_handle_on_message): under its callback lock; an
            # error is logged and, unless paho is told to suppress them, raised.
            with self._in_callback_mutex:  # type: ignore[attr-defined]
                try:
                    sink(message)
                except Exception:
                    _LOG.exception("the MQTT message sink failed")
                    if not self.suppress_exceptions:  # type: ignore[attr-defined]
                        raise
        if taken:
            # paho's keepalive counts the broker silent from its last read packet.
            with self._msgtime_mutex:  # type: ignore[attr-defined]
                self._last_bytes_received = time.monotonic()
        return taken
