"""paho's own reading of a PUBLISH against the link's plain-PUBLISH path (daemon/mqtt_socket.py).

    .venv/bin/python tests/bench/bench_paho_read.py [--messages 50000] [--rounds 5]

The collector's MQTT client (`daemon/mqtt.py`'s `_Client`) reads the drain bench's telemetry
(1,000 devices, full Segway readings, QoS 1, MQTT 5 without properties) from a socket that
serves a prepared byte string, so only Python's work is timed: once with paho reading every
packet (no `publish_sink`: paho's state dictionary, `MQTTMessage`, its callback dispatch),
once with plain PUBLISH packets taken whole from the buffer. Both hand the link's sink the same
`Inbound` messages, checked equal. Prints µs a message (the best round of each, alternated)
and the ratio; no target, no exit status for a figure.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from fleet.daemon.mqtt import Inbound, _Client
from fleet.daemon.mqtt_socket import Publish, ReadBuffered
from tests.bench._common import Fleet


class _Bytes:
    """A non-blocking socket with everything already received."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            raise BlockingIOError
        part = self._data[self._pos : self._pos + size]
        self._pos += len(part)
        return part

    def close(self) -> None:
        pass


def _publish(topic: str, payload: bytes, mid: int) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + mid.to_bytes(2, "big") + b"\x00" + payload
    length, size = bytearray(), len(body)
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([0x32, *length]) + body


def read_all(data: bytes, n: int, *, plain: bool) -> tuple[float, list[Inbound]]:
    """Seconds of CPU to read `n` messages from `data`, and what the sink got."""
    got: list[Inbound] = []
    client = _Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench",
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )

    def on_message(_c: object, _u: object, m: MQTTMessage) -> None:
        got.append(Inbound(m.topic, bytes(m.payload), m.qos, m.mid, 0, bool(m.retain)))

    def on_plain(m: Publish) -> None:
        got.append(Inbound(m.topic, m.payload, m.qos, m.mid, 0, m.retain))

    client.on_message = on_message
    client.publish_sink = on_plain if plain else None
    client._sock = ReadBuffered(_Bytes(data))
    started = time.process_time()
    while len(got) < n:
        client.loop_read()
    return time.process_time() - started, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fleet = Fleet(1000)
    now = time.time()
    data = b"".join(
        _publish(*fleet.message(i % fleet.size, i // fleet.size, now), (i % 65535) + 1)
        for i in range(args.messages)
    )
    best = {False: math.inf, True: math.inf}
    for _ in range(args.rounds):
        results = {}
        for plain in (False, True):
            seconds, got = read_all(data, args.messages, plain=plain)
            best[plain] = min(best[plain], seconds)
            results[plain] = got
        assert results[False] == results[True], "the two paths delivered different messages"
    paho_us, plain_us = (best[p] / args.messages * 1e6 for p in (False, True))
    size = len(data) // args.messages
    print(f"{args.messages:,} PUBLISH packets ({size} B each), best of {args.rounds}:")
    print(f"  paho reads each packet     {paho_us:7.1f} µs CPU a message")
    print(f"  plain PUBLISH from buffer  {plain_us:7.1f} µs CPU a message")
    print(f"  ratio paho / plain         {paho_us / plain_us:7.1f} x")


if __name__ == "__main__":
    main()
