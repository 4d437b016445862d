"""Plain PUBLISH packets taken straight from the read buffer (daemon/mqtt_socket.py) against
paho reading every packet itself: the same messages, in the same order, whatever the mix of
packets and wherever the socket's reads cut them; everything that is not plain stays paho's.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.daemon.mqtt import Inbound, _Client
from fleet.daemon.mqtt_socket import Publish, ReadBuffered

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


class Received:
    """A socket whose bytes have all arrived; each recv() returns at most `step` of them."""

    def __init__(self, data: bytes, step: int = 1 << 20) -> None:
        self.data, self._pos, self._step = data, 0, step

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self.data):
            raise BlockingIOError
        part = self.data[self._pos : self._pos + min(size, self._step)]
        self._pos += len(part)
        return part

    def drained(self) -> bool:
        return self._pos >= len(self.data)

    def close(self) -> None:
        pass


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    retain: bool = False,
    dup: bool = False,
    props: bytes | None = b"\x00",  # MQTT 5's property block; None for MQTT 3.1.1
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += (props or b"") + payload
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes([header]) + varint(len(body)) + body


def content_type(value: str) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = value
    return bytes(props.pack())


class Reader:
    """The link's client reading `data`; what reached the link's sink, and by which path."""

    def __init__(
        self, data: bytes, *, plain: bool, protocol: MQTTProtocolVersion = V5, step: int = 1 << 20
    ) -> None:
        self.got: list[Inbound] = []
        self.by_paho = 0
        self.client = _Client(
            CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=True
        )
        self.client.on_message = self._on_message
        self.client.publish_sink = self._on_plain if plain else None
        self.socket = Received(data, step)
        self.client._sock = ReadBuffered(self.socket)

    def done(self) -> bool:
        return self.socket.drained() and not self.client._sock.pending()  # type: ignore[union-attr]

    def _on_message(self, _client: Any, _userdata: Any, m: Any) -> None:
        self.by_paho += 1
        self.got.append(Inbound(m.topic, bytes(m.payload), m.qos, m.mid, 0, bool(m.retain)))

    def _on_plain(self, m: Publish) -> None:
        self.got.append(Inbound(m.topic, m.payload, m.qos, m.mid, 0, m.retain))

    def read(self) -> list[Inbound]:
        """Turns of paho's loop until every byte is read (each turn reads at least one)."""
        for _ in range(len(self.socket.data) + 1):
            if self.done():
                break
            assert self.client.loop_read() == 0
        assert self.done()
        return self.got


packets = st.tuples(
    st.text(min_size=1, max_size=40).map(str.encode),  # text() leaves surrogates out: UTF-8
    st.binary(max_size=300),
    st.integers(0, 1),
    st.integers(1, 0xFFFF),
    st.booleans(),
    st.booleans(),
    st.sampled_from([b"\x00", b"\x00", b"\x00", "properties"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets, min_size=1, max_size=40), st.integers(1, 700), st.booleans())
def test_the_same_messages_in_the_same_order_as_paho_reading_each(
    specs: list[tuple[Any, ...]], step: int, v5: bool
) -> None:
    stream = b"".join(
        publish(
            topic,
            payload,
            qos=qos,
            mid=mid,
            retain=retain,
            dup=dup,
            props=(content_type("text/x") if props == "properties" else props) if v5 else None,
        )
        for topic, payload, qos, mid, retain, dup, props in specs
    )
    protocol = V5 if v5 else V311
    by_paho = Reader(stream, plain=False, protocol=protocol, step=step).read()
    assert len(by_paho) == len(specs)
    assert Reader(stream, plain=True, protocol=protocol, step=step).read() == by_paho


def test_plain_packets_skip_paho_and_the_others_go_through_it() -> None:
    stream = b"".join(
        [
            publish(b"a/1", b"one", mid=1),
            publish(b"a/2", b"two", mid=2, props=content_type("application/json")),
            publish(b"a/3", b"three", qos=0, retain=True),
            publish(b"a/4", b"four", mid=4),
        ]
    )
    reader = Reader(stream, plain=True)
    got = reader.read()
    assert [(m.topic, m.payload, m.qos, m.mid, m.retain) for m in got] == [
        ("a/1", b"one", 1, 1, False),
        ("a/2", b"two", 1, 2, False),
        ("a/3", b"three", 0, 0, True),
        ("a/4", b"four", 1, 4, False),
    ]
    # The first comes through paho (its recv() fills the buffer), then a/2 has properties.
    assert reader.by_paho == 2


def test_a_packet_not_wholly_buffered_is_not_taken() -> None:
    packet = publish(b"fleet/v1/hq/segway/sw-1/telemetry", b'{"seq":1}', mid=7)
    for cut in range(len(packet)):
        buffered = ReadBuffered(Received(packet[:cut]))
        if cut:
            buffered.recv(0)  # fill the buffer with the part that came
        assert buffered.take_publish(True) is None
        assert buffered.pending() == cut
    whole = ReadBuffered(Received(packet))
    whole.recv(0)
    assert whole.take_publish(True) == Publish(
        "fleet/v1/hq/segway/sw-1/telemetry", b'{"seq":1}', 1, 7, False
    )
    assert whole.pending() == 0


@pytest.mark.parametrize(
    "packet",
    [
        publish(b"t", b"x", qos=2, mid=3),  # QoS 2: paho's exchange
        b"\x36" + publish(b"t", b"x")[1:],  # QoS 3: malformed
        publish(b"", b"x"),  # no topic (an MQTT 5 alias needs properties)
        publish(b"\xff\xfe", b"x"),  # not UTF-8
        publish(b"t", b"x", props=content_type("a")),  # properties
        b"\x32\x04\x00\x09ab",  # the topic runs past the packet
        b"\x32\x03\x00\x01t",  # MQTT 5 without its property length
        b"\x32\xff\xff\xff\xff\x01" + b"\x00" * 8,  # a length of five bytes
        b"\x82\x05\x00\x01\x00\x00\x00",  # not a PUBLISH
    ],
)
def test_anything_not_plain_stays_in_the_buffer_for_paho(packet: bytes) -> None:
    buffered = ReadBuffered(Received(packet))
    buffered.recv(0)
    assert buffered.take_publish(True) is None
    assert buffered.pending() == len(packet)


def test_reading_counts_for_the_keepalive() -> None:
    reader = Reader(b"".join(publish(b"a", b"%d" % i, mid=i + 1) for i in range(50)), plain=True)
    reader.client._sock.recv(0)  # type: ignore[union-attr]  # all 50 buffered: none by paho
    reader.client._last_bytes_received = 0.0
    assert len(reader.read()) == 50
    assert reader.by_paho == 0
    assert reader.client._last_bytes_received > 0.0


def test_mqtt_3_has_no_property_length_to_take() -> None:
    stream = publish(b"a", b"\x00\x01", props=None) + publish(b"b", b"\x00", qos=0, props=None)
    reader = Reader(stream, plain=True, protocol=V311)
    reader.client._sock.recv(0)  # type: ignore[union-attr]
    assert [(m.topic, m.payload) for m in reader.read()] == [("a", b"\x00\x01"), ("b", b"\x00")]
    assert reader.by_paho == 0


def test_a_failing_sink_is_logged_and_raised_as_paho_does(caplog: pytest.LogCaptureFixture) -> None:
    stream = publish(b"a", b"1", mid=1) + publish(b"a", b"2", mid=2)
    reader = Reader(stream, plain=True)

    def broken(m: Publish) -> None:
        raise ValueError("sink broke")

    reader.client.publish_sink = broken
    reader.client._sock.recv(0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="sink broke"):
        reader.client.loop_read()
    assert "the MQTT message sink failed" in caplog.text
    reader.client.suppress_exceptions = True
    assert reader.client.loop_read() == 0  # logged, and reading goes on


def test_at_debug_paho_reads_and_logs_every_packet() -> None:
    paho_log = logging.getLogger("paho")
    level = paho_log.level
    paho_log.setLevel(logging.DEBUG)
    try:
        stream = b"".join(publish(b"a", b"%d" % i, mid=i + 1) for i in range(20))
        reader = Reader(stream, plain=True)
        reader.client._log = paho_log
        assert len(reader.read()) == 20
        assert reader.by_paho == 20
    finally:
        paho_log.setLevel(level)


def test_the_gate_bounds_what_is_taken() -> None:
    stream = b"".join(publish(b"a", b"%d" % i, mid=i + 1) for i in range(30))
    reader = Reader(stream, plain=True)
    reader.client.read_gate = lambda _wait: len(reader.got) < 12  # an inbox bound of 12
    for _ in range(5):
        reader.client.loop_read()
    assert len(reader.got) == 12
    assert reader.client._sock.pending() > 0  # type: ignore[union-attr]
