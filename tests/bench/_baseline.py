"""The baseline the collector is measured against: a bare paho subscriber that only counts.

Same broker, same protocol (MQTT 5), same QoS 1, same Receive Maximum as the collector's default,
but paho's automatic acknowledgement and nothing else in the message callback. paho is imported
here, outside daemon/mqtt.py, on purpose: the baseline must not go through our own link.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.daemon import wire
from tests.bench._common import PREFIX
from tests.harness.servers import MosquittoServer

TOPIC = wire.subscriptions(PREFIX)[0]  # the telemetry filter, as the collector subscribes it


def _connect_properties(expiry_s: int, receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    props.ReceiveMaximum = receive_maximum
    return props


class BareSubscriber:
    """Counts messages on the telemetry topics; records the first and last arrival."""

    def __init__(
        self, broker: MosquittoServer, client_id: str, *, expected: int, receive_maximum: int
    ) -> None:
        self._broker = broker
        self._receive_maximum = receive_maximum
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.done = threading.Event()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def connect(self, *, clean_start: bool) -> None:
        """Connect with a one-hour session and wait for the SUBACK."""
        self._client.connect(
            self._broker.host,
            self._broker.port,
            clean_start=clean_start,
            properties=_connect_properties(3600, self._receive_maximum),
        )
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("baseline subscriber got no SUBACK")

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def rate(self) -> float:
        assert self.first is not None
        assert self.last is not None
        return self.count / (self.last - self.first)

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe(TOPIC, qos=1)

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        if self.count >= self.expected:
            self.done.set()


def forget_session(broker: MosquittoServer, client_id: str) -> None:
    """Make the broker drop a persistent session (clean start, expiry 0), so it stops queueing
    messages for a subscriber that is gone and later scenarios do not pay for it."""
    connected = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_connect = lambda *args: connected.set()
    client.connect(
        broker.host, broker.port, clean_start=True, properties=_connect_properties(0, 1000)
    )
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"could not connect as {client_id} to drop its session")
    finally:
        client.disconnect()
        client.loop_stop()
