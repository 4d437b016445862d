"""The baseline the collector is measured against: a bare paho subscriber that only counts.

Same broker, same protocol (MQTT 5), same QoS 1, same Receive Maximum as the collector's default,
but paho's automatic acknowledgement and nothing else in the message callback. paho is imported
here, outside daemon/mqtt.py, on purpose: the baseline must not go through our own link.

Run as a script it is the drain scenario's baseline in a process of its own (so its CPU time is
its own, like the collector's):

    python tests/bench/_baseline.py session --port P --client-id C --receive-maximum R
    python tests/bench/_baseline.py drain --port P --client-id C --receive-maximum R --expected N

`session` creates the persistent session and its subscription, then disconnects; `drain`
reconnects to it, counts N messages and prints one JSON line: rate (first to last arrival),
seconds from the connect to the last arrival, the process's CPU seconds over the same span and
the whole machine's busy CPU seconds (every core, every process) over it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleet.daemon import wire
from tests.bench._machine import PREFIX, machine_busy_s
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
        self, host: str, port: int, client_id: str, *, expected: int, receive_maximum: int
    ) -> None:
        self._host, self._port = host, port
        self._receive_maximum = receive_maximum
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.last_cpu = 0.0  # process CPU seconds at the last arrival
        self.last_busy = 0.0  # the machine's busy CPU seconds at the last arrival
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
            self._host,
            self._port,
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
            self.last_cpu = time.process_time()
            self.last_busy = machine_busy_s()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("session", "drain"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--receive-maximum", type=int, required=True)
    parser.add_argument("--expected", type=int, default=0)
    args = parser.parse_args()
    sub = BareSubscriber(
        args.host,
        args.port,
        args.client_id,
        expected=args.expected,
        receive_maximum=args.receive_maximum,
    )
    # Bare paho, not ours: fleet.daemon.mqtt installs the lean PUBLISH decoder when imported.
    if "fleet.daemon.mqtt" in sys.modules:
        raise SystemExit("the baseline imported fleet.daemon.mqtt: it would not be bare paho")
    if args.mode == "session":
        sub.connect(clean_start=True)
        sub.disconnect()
        return
    connect, cpu, busy = time.perf_counter(), time.process_time(), machine_busy_s()
    sub.connect(clean_start=False)
    if not sub.done.wait(900):
        raise SystemExit(f"bare subscriber received {sub.count} of {args.expected} messages")
    sub.disconnect()
    assert sub.last is not None
    summary = {
        "count": sub.count,
        "rate": sub.rate(),
        "seconds": sub.last - connect,
        "cpu_s": sub.last_cpu - cpu,
        "machine_busy_s": sub.last_busy - busy,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
