"""A lean decoder for the common MQTT 5 PUBLISH: one without properties.

paho builds a `Properties` object for every MQTT 5 PUBLISH it receives and parses its
property block through a generic table, even when the block is the single byte 0x00 that
Mosquitto sends for a plain message: 42 µs a message on the test machine, about a third
of paho's own cost per message and an eighth of the collector's (bench_collector.py
scenario 4). This decodes that case directly and hands every other packet - properties
present, MQTT 3.1.1, anything short or odd - to paho's own decoder, so paho still decides
what is malformed. tests/daemon/test_mqtt_publish_decode.py checks it against paho's
decoder on generated packets.

It imports nothing from paho (daemon/mqtt.py, the one module that does, wires it in):
the packet tuple type, the shared empty properties and paho's decoder come as arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Decode = Callable[[int, Any, Any], Any]  # paho's decode_publish(header, packet, protocol)


def lean_decode_publish(
    paho_decode: Decode, packet_type: Callable[..., Any], empty_properties: object, v5: object
) -> Decode:
    """`paho_decode` with the property-less MQTT 5 PUBLISH decoded here.

    `empty_properties` is one object shared by every such message: nothing in the daemon
    reads or changes a received message's properties (paho only logs them at DEBUG)."""

    def decode(header: int, packet: Any, protocol: Any) -> Any:
        qos = (header & 0x06) >> 1
        size = len(packet)
        if protocol != v5 or qos == 3 or size < 2:
            return paho_decode(header, packet, protocol)
        end = 2 + ((packet[0] << 8) | packet[1])  # after the topic
        props = end + 2 if qos else end  # the property length, after the packet id
        if props >= size or packet[props] != 0:
            return paho_decode(header, packet, protocol)
        return packet_type(
            dup=bool(header & 0x08),
            qos=qos,
            retain=bool(header & 0x01),
            topic=bytes(packet[2:end]),
            mid=(packet[end] << 8) | packet[end + 1] if qos else 0,
            properties=empty_properties,
            payload=bytes(packet[props + 1 :]),
        )

    # Only `__wrapped__` (paho's, for the tests): not paho's name, which would disguise it.
    return functools.update_wrapper(decode, paho_decode, assigned=())


def install(packet_module: Any, empty_properties: object, v5: object) -> None:
    """Puts the lean decoder in paho's `_packet` module, which paho's client calls through
    the module (pinned paho<3); daemon/mqtt.py passes the module and paho's values."""
    packet_module.decode_publish = lean_decode_publish(
        packet_module.decode_publish, packet_module.PublishPacket, empty_properties, v5
    )
