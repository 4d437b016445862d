"""Test parts for `fleet broker-config`: a configuration, the command, the broker it makes,
and a raw MQTT 5 client that reports what the broker answered (CONNACK, PUBACK reason codes).

The broker runs from the generated mosquitto.conf exactly as written (`mosquitto -c FILE`,
nothing appended): that is what the command promises.
"""

from __future__ import annotations

import itertools
import os
import pwd
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet.daemon import cli
from tests.harness.base import ManagedServer, find_binary
from tests.harness.process import port_open
from tests.harness.waiting import wait_until

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code of CONNACK and PUBACK
_ids = itertools.count(1)

RUN_AS = pwd.getpwuid(os.geteuid()).pw_name  # tmp_path is ours alone: mosquitto stays us

# Two declared collectors, one site each (`[[broker.collectors]]`).
DECLARED_COLLECTORS = """
[[broker.collectors]]
user = "collector-a"
sites = ["allingtown"]

[[broker.collectors]]
user = "collector-w"
sites = ["westhaven"]
"""

REGISTRY = """
[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"
site = "westhaven"

[[devices]]
id = "hh-01"
kind = "handheld"
owntracks = "alice/phone"

[[devices]]
id = "hh-02"
kind = "handheld"
owntracks = "bob/phone"

[[agents]]
id = "dock-a"
devices = ["sw-01"]

[[agents]]
id = "dock-w"
site = "westhaven"
devices = ["sw-02"]
"""


def fleet_toml(
    tmp_path: Path,
    *,
    port: int = 18830,
    registry: str = REGISTRY,
    username: str | None = "fleet-collector",
    mqtt: str = "",
    bind: str = "127.0.0.1",
    broker: str = "",
    extra: str = "",
    name: str = "fleet.toml",
) -> Path:
    """A configuration with a registry, two agents, two OwnTracks users and an ack user;
    `mqtt` and `broker` add keys to those tables, `extra` whole tables."""
    data = tmp_path / "mosquitto-data"
    data.mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(
        f"""
[site]
id = "allingtown"

[mqtt]
host = "127.0.0.1"
port = {port}
{f'username = "{username}"' if username is not None else ""}
{mqtt}

{registry}

[broker]
bind = "{bind}"
port = {port}
persistence_location = "{data}"
ack_users = ["ops"]
{broker}

{extra}
"""
    )
    return path


def broker_config(config: Path, out: Path, capsys: Any, *extra: str) -> tuple[int, str, str]:
    """Run `fleet broker-config` in-process: (exit code, stdout, stderr)."""
    code = cli.main(
        ["broker-config", "--config", str(config), "--out", str(out), "--run-as", RUN_AS, *extra]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def credential(out: Path, user: str) -> str:
    return (out / "credentials" / user).read_text()


class GeneratedMosquitto(ManagedServer):
    """`mosquitto -c <generated conf>` as it is; its log (stderr) is `output_path`."""

    name = "mosquitto"

    def __init__(self, conf: Path, port: int, workdir: Path) -> None:
        super().__init__(workdir, port)
        self.conf = conf

    def _command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.conf)]

    def _is_ready(self) -> bool:
        return port_open(self.host, self.port)

    def log_text(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Probe:
    """A raw paho client (MQTT 5 unless told) that keeps what the broker answered.

    By default a fresh client id and a clean session; `client_id` and `persistent` make it
    ask for a given client's persistent session (as an attacker would)."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None = None,
        *,
        ca: Path | None = None,
        v5: bool = True,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.v5 = v5
        self.persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{user}-{os.getpid()}-{next(_ids)}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else not persistent,
            reconnect_on_failure=False,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.port = port
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self._answered = threading.Event()
        self.dropped = threading.Event()  # the broker closed the connection
        self._lock = threading.Lock()
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = rc
        self.session_present = bool(flags.session_present)
        self._answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.dropped.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self._pubacks[mid] = rc

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._lock:
            self._subacks[mid] = list(rcs)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def connect(self) -> ReasonCode:
        """Connect and wait for the CONNACK; its reason code."""
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600 if self.persistent else 0
        self.client.connect(
            "127.0.0.1",
            self.port,
            keepalive=30,
            clean_start=not self.persistent if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client.loop_start()
        assert self._answered.wait(10), "no CONNACK within 10 s"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1 and wait for the PUBACK: its reason code (0x87: not authorized)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        rc = wait_until(
            lambda: self._pubacks.get(info.mid), timeout=10, message=f"PUBACK of {topic}"
        )
        assert rc is not None
        return int(rc.value)

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK (Mosquitto 2.0 grants any filter; the
        read right is checked for each message delivered)."""
        _, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None
        wait_until(lambda: self._subacks.get(mid), timeout=10, message=f"SUBACK {topic_filter}")

    def topics(self) -> list[str]:
        with self._lock:
            return [topic for topic, _, _ in self.messages]

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        if self.connack is not None and not self.connack.is_failure:
            self.client.disconnect()
        self.client.loop_stop()
