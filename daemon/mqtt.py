"""The MQTT link: the only module that imports paho-mqtt.

paho runs its own network thread (`loop_start`), reading its socket through a
buffer and only while the owner has room (`read_gate`; daemon/mqtt_socket.py).
Callbacks never do work of their own: a received message is handed to the sink
the owner registered, and acknowledging it is the owner's decision (manual
acks), because the collector may acknowledge a message only once it is on disk.

Acknowledgements carry the connection generation of the message: after a
reconnect the broker redelivers every unacknowledged message under new packet
ids, so an ack for an id of an older connection would acknowledge the wrong
message and must be dropped.

A publish the broker refuses (MQTT 5: a PUBACK reason code of 0x80 or more,
e.g. 0x87 "not authorized" from the ACL) is acknowledged all the same: paho
forgets it like a delivered one. `refusals` keeps it, counts it per topic class
and logs it sparingly (daemon/mqtt_refusals.py); a caller waiting for delivery
takes the refusals of its own message ids with `take_refusals`. Under MQTT
3.1.1 a refused publish is acknowledged as delivered and nothing can tell.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet as paho_packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.config.mqtt import MqttSettings
from fleet.daemon.mqtt_link_log import ConnectFailures, NoSocketNoise
from fleet.daemon.mqtt_publish_decode import install as install_lean_decoder
from fleet.daemon.mqtt_refusals import PublishRefusals, Refusal
from fleet.daemon.mqtt_socket import (
    PUBACK,
    BufferedReads,
    NoFilters,
    Publish,
    ReadGate,
    pubacks,
)

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message received from the broker, waiting for its acknowledgement."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    retain: bool


MessageSink = Callable[[Inbound], None]


_EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
install_lean_decoder(paho_packet, _EMPTY_PUBLISH_PROPERTIES, MQTTProtocolVersion.MQTTv5)

_PAHO_LOG = logging.getLogger("paho")
_PAHO_LOG.addFilter(NoSocketNoise())


class _Client(BufferedReads, paho.Client):
    """paho's client reading through a buffer, its reads gated (daemon/mqtt_socket.py)."""

    _READ_OK = paho.MQTT_ERR_SUCCESS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Pinned paho<3: its private matcher of message_callback_add's filters.
        self._on_message_filtered = NoFilters()  # type: ignore[assignment]


class MqttLink:
    """One MQTT client connection with automatic reconnect.

    `start()` connects in the background and returns its undo. Subscriptions
    given to the constructor are (re)made on every connect, so they survive a
    broker that lost its session.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str | None = None,
        persistent: bool = True,
        will: tuple[str, bytes] | None = None,
        subscriptions: Sequence[str] = (),
        on_message: MessageSink | None = None,
        manual_ack: bool = False,
        on_connect: Callable[[], None] | None = None,
        on_session: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        read_gate: ReadGate | None = None,
    ) -> None:
        self._settings = settings
        self._on_connect_hook = on_connect
        # Told when a connection ends (lost, refused or closed): its owner may be blind now.
        self._on_disconnect_hook = on_disconnect
        # Told on every connect whether the broker still had our session (MQTT's
        # "session present"): the owner decides whether its absence means loss.
        self._on_session_hook = on_session
        self.session_present: bool | None = None  # as of the last connect
        self._client_id = client_id or settings.client_id
        self._persistent = persistent
        self._subscriptions = list(subscriptions)
        self._on_message_sink = on_message
        self._v5 = settings.protocol == "5"
        self._generation = 0
        self._connected = threading.Event()
        self._was_connected = False
        self.refusals = PublishRefusals()
        # Why the broker refused the last connection (CONNACK), None once one succeeds.
        self.connect_refused: str | None = None
        # Why the last attempt failed before MQTT (TCP, TLS): logged once per reason.
        self.connect_failed = ConnectFailures(f"{settings.host}:{settings.port}")

        protocol = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        kwargs: dict[str, Any] = {}
        if not self._v5:
            kwargs["clean_session"] = not persistent
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=protocol,
            reconnect_on_failure=True,
            manual_ack=manual_ack,
            **kwargs,
        )
        client.enable_logger(_PAHO_LOG)
        client._log = _PAHO_LOG
        # Plain PUBLISH packets read straight from the buffer (daemon/mqtt_socket.py); paho
        # would acknowledge what it reads itself unless acknowledgements are manual.
        client.publish_sink = self._on_publish_plain if manual_ack else None
        # Asked before each read: the owner's queue is full (daemon/mqtt_inbox.py).
        client.read_gate = read_gate
        # No cap on messages queued while the broker is away: the caller's
        # store-and-forward decides how much to keep, not a silent drop here.
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(settings.receive_maximum)
        client.reconnect_delay_set(1, 10)
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            client.tls_set(
                ca_certs=str(settings.tls.ca_file) if settings.tls.ca_file else None,
                certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(settings.tls.insecure)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_connect_fail = self.connect_failed.on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client

    def set_message_sink(self, sink: MessageSink) -> None:
        """Where received messages go; set before `start()`."""
        self._on_message_sink = sink

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def read_pauses(self) -> int:
        """Turns of paho's loop that read nothing because the read gate said no."""
        return self._client.read_pauses

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> Callable[[], None]:
        properties: Properties | None = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = (
                self._settings.session_expiry_s if self._persistent else 0
            )
            properties.ReceiveMaximum = self._settings.receive_maximum
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            # A persistent session must never be cleaned, not even on the first
            # connect: the broker holds what arrived while we were away.
            clean_start=not self._persistent if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()
        return self.stop

    def stop(self) -> None:
        if self._connected.is_set():
            # A clean DISCONNECT: the broker discards our will (we said goodbye ourselves).
            self._client.disconnect()
        self._client.loop_stop()
        self._close_wakeup_pair()
        self._connected.clear()
        self.refusals.log_unlogged()

    def _close_wakeup_pair(self) -> None:
        # paho closes the socket pair loop_start() made only when the client is
        # garbage collected; in a reference cycle the sockets may go first and
        # warn "unclosed socket". Pinned paho<3: its private reset, after loop_stop.
        self._client._reset_sockets(sockpair_only=True)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes our will."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._close_wakeup_pair()
        self._connected.clear()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a message; paho keeps QoS>0 messages across reconnects until acknowledged."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_tracked(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> int:
        """`publish`, returning the message id: for `take_refusals` once it is acknowledged."""
        return self._client.publish(topic, payload, qos=qos, retain=retain).mid

    def take_refusals(self, mids: Iterable[int]) -> dict[int, Refusal]:
        """Which of these acknowledged messages the broker refused (MQTT 5 only)."""
        return self.refusals.take(mids)

    def unacknowledged(self) -> int:
        """Messages published but not yet acknowledged by the broker (or not yet sent)."""
        # paho's own table of outgoing messages is the only record that is
        # right across reconnects: MQTTMessageInfo.is_published() raises for a
        # message queued while disconnected, although paho sends it later, and
        # tracking acks in on_publish races paho's lock order. Pinned paho<3.
        return len(self._client._out_messages)

    def flush(self, timeout: float) -> bool:
        """Wait until every QoS>0 publish is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while self.unacknowledged():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def ack(self, message: Inbound) -> None:
        if message.qos == 0 or message.generation != self._generation:
            return
        self._client.ack(message.mid, message.qos)

    def ack_all(self, messages: Sequence[Inbound]) -> None:
        """`ack` for a batch, in order, as one write: paho queues each PUBACK as a packet of
        its own, with a wake-up of its network thread and a send() each (the drain's profile:
        a fifth of that thread). The bytes are the ones paho's `ack` queues: 0x40, 2, the id."""
        generation = self._generation
        current = [m for m in messages if m.qos and m.generation == generation]
        if any(m.qos != 1 for m in current):
            for message in messages:  # a QoS 2 message among them: paho's own, one by one
                self.ack(message)
            return
        if current:
            # Pinned paho<3: its private queue, as `ack` -> `_send_puback` uses it.
            self._client._packet_queue(PUBACK, pubacks([m.mid for m in current]), 0, 1)

    # paho callbacks: they run on paho's network thread.

    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: Any, sock: Any) -> None:
        # Without TCP_NODELAY each small packet (a PUBACK, a retained alert) can
        # sit out the peer's 40 ms delayed-ACK timer: alerts would be 80 ms late.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.connect_refused = str(reason_code)
            _LOG.error(
                "MQTT broker %s:%s refused %s: %s",
                self._settings.host,
                self._settings.port,
                self._client_id,
                reason_code,
            )
            return
        self._generation += 1
        self.connect_refused = None
        self.connect_failed.clear()
        if self._was_connected:
            _LOG.info(
                "MQTT reconnected to %s:%s (session present: %s)",
                self._settings.host,
                self._settings.port,
                flags.session_present,
            )
        else:
            _LOG.info(
                "MQTT connected to %s:%s as %s (session present: %s)",
                self._settings.host,
                self._settings.port,
                self._client_id,
                flags.session_present,
            )
        self._was_connected = True
        self.session_present = bool(flags.session_present)
        if self._on_session_hook is not None:
            # Before subscribing: the owner records the session first. On paho's
            # thread, where an exception would end paho's loop: logged instead.
            try:
                self._on_session_hook(self.session_present)
            except Exception:  # noqa: BLE001 - the connection matters more than the record
                _LOG.exception("recording the MQTT session state failed")
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()
        if self._on_connect_hook is not None:
            # On paho's thread: the hook may publish, but must not block.
            self._on_connect_hook()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        # Called with paho's outgoing-message lock held, before paho forgets the
        # message: its topic is still there, and nothing here may call paho.
        message = client._out_messages.get(mid)
        topic = message.topic if message is not None else None
        self.refusals.acknowledged(mid, topic, int(reason_code.value), str(reason_code))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set() and reason_code.is_failure:
            _LOG.warning(
                "MQTT connection to %s:%s lost: %s",
                self._settings.host,
                self._settings.port,
                reason_code,
            )
        self._connected.clear()
        if self._on_disconnect_hook is not None:
            # On paho's thread, where an exception would end paho's loop: logged instead.
            try:
                self._on_disconnect_hook()
            except Exception:  # noqa: BLE001 - reconnecting matters more than the hook
                _LOG.exception("the MQTT disconnect hook failed")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._on_publish_plain(
            Publish(message.topic, bytes(message.payload), message.qos, message.mid, message.retain)
        )

    def _on_publish_plain(self, m: Publish) -> None:
        sink = self._on_message_sink
        if sink is not None:
            sink(Inbound(m.topic, m.payload, m.qos, m.mid, self._generation, bool(m.retain)))
