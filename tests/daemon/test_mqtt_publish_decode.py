"""The lean MQTT 5 PUBLISH decoder against paho's own, on generated and hostile packets.

The lean path must give exactly what paho gives for a PUBLISH without properties, and must
hand everything else to paho (which then decides: a result, or MalformedPacket). Importing
fleet.daemon.mqtt installs it; `ORIGINAL` is paho's decoder it wraps.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet as paho_packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import fleet.daemon.mqtt  # noqa: F401 - installs the lean decoder

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311
LEAN = paho_packet.decode_publish


PAHO: Any = LEAN.__wrapped__  # type: ignore[attr-defined]


def outcome(decode: Any, header: int, packet: bytes | bytearray, protocol: object) -> object:
    try:
        result = decode(header, packet, protocol)
    except MalformedPacket as err:
        return ("malformed", str(err))
    props = result.properties
    return (
        result.dup,
        result.qos,
        result.retain,
        result.topic,
        type(result.topic),
        result.mid,
        None if props is None else props.json(),
        result.payload,
        type(result.payload),
    )


def publish_body(topic: bytes, qos: int, mid: int, props: bytes, payload: bytes) -> bytes:
    return (
        struct.pack("!H", len(topic))
        + topic
        + (struct.pack("!H", mid) if qos else b"")
        + (props + payload)
    )


def test_the_lean_decoder_is_installed_and_wraps_paho() -> None:
    assert LEAN is not PAHO
    assert PAHO.__module__ == paho_packet.__name__


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    topic=st.binary(max_size=80),
    qos=st.integers(0, 2),
    mid=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0x0F),
    payload=st.binary(max_size=300),
    protocol=st.sampled_from([V5, V311]),
)
def test_a_publish_without_properties_decodes_as_paho_decodes_it(
    topic: bytes, qos: int, mid: int, flags: int, payload: bytes, protocol: object
) -> None:
    header = 0x30 | (flags & 0x09) | (qos << 1)
    body = publish_body(topic, qos, mid, b"\x00" if protocol == V5 else b"", payload)
    for packet in (body, bytearray(body)):  # paho hands either
        assert outcome(LEAN, header, packet, protocol) == outcome(PAHO, header, packet, protocol)


def _properties(expiry: int | None, content: str | None, user: list[tuple[str, str]]) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if content is not None:
        props.ContentType = content
    if user:
        props.UserProperty = user
    return bytes(props.pack())


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    topic=st.binary(min_size=1, max_size=40),
    qos=st.integers(0, 2),
    mid=st.integers(1, 0xFFFF),
    expiry=st.none() | st.integers(0, 2**32 - 1),
    content=st.none() | st.text(max_size=20),
    user=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
    payload=st.binary(max_size=100),
)
def test_a_publish_with_properties_is_paho_s_to_decode(
    topic: bytes,
    qos: int,
    mid: int,
    expiry: int | None,
    content: str | None,
    user: list[tuple[str, str]],
    payload: bytes,
) -> None:
    header = 0x30 | (qos << 1)
    body = publish_body(topic, qos, mid, _properties(expiry, content, user), payload)
    assert outcome(LEAN, header, body, V5) == outcome(PAHO, header, body, V5)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(header=st.integers(0x30, 0x3F), packet=st.binary(max_size=40))
def test_hostile_bytes_get_the_same_answer_as_from_paho(header: int, packet: bytes) -> None:
    # Short, truncated, a property length that points past the end, QoS 3: a result or
    # MalformedPacket, the same one paho gives - never another exception.
    assert outcome(LEAN, header, packet, V5) == outcome(PAHO, header, packet, V5)


def test_the_common_case_takes_the_lean_path() -> None:
    # Without this, a lean path that always fell back to paho would pass everything above.
    body = publish_body(b"fleet/v1/a/segway/sw-01/telemetry", 1, 7, b"\x00", b"{}")
    fresh = PAHO(0x32, body, V5)
    lean_a = LEAN(0x32, body, V5)
    lean_b = LEAN(0x32, body, V5)
    assert fresh.properties is not None
    assert fresh.properties is not lean_a.properties
    assert lean_a.properties is lean_b.properties  # the shared empty object: no parse
    assert (lean_a.topic, lean_a.mid, lean_a.payload) == (fresh.topic, 7, b"{}")


@pytest.mark.parametrize(
    ("header", "packet"),
    [
        (0x32, b"\x00\x01t\x00\x07"),  # QoS 1, ends after the packet id: no property length
        (0x30, b"\x00\x01t"),  # QoS 0, ends after the topic
        (0x32, b"\x00\x01t\x00"),  # half a packet id
        (0x30, b"\x00\x05t"),  # a topic length past the end
        (0x36, b"\x00\x01t\x00\x07\x00"),  # QoS 3
        (0x30, b"\x00"),
        (0x30, b""),
    ],
)
def test_truncated_packets_are_malformed_as_paho_says(header: int, packet: bytes) -> None:
    assert outcome(LEAN, header, packet, V5) == outcome(PAHO, header, packet, V5)
