"""Test helpers around the real collector: its config, a publisher, a dead-letter listener."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomlkit

from fleet.config import FleetSettings, load_settings
from fleet.daemon.collector.app import Collector
from fleet.daemon.mqtt import Inbound, MqttLink
from tests.harness.servers import InfluxServer, MosquittoServer

_ids = itertools.count(1)


def write_config(
    tmp_path: Path,
    *,
    broker: MosquittoServer,
    influx: InfluxServer,
    database: str,
    extra: str = "",
    alerts: str = "",
    client_id: str | None = None,
    production: bool = False,
) -> Path:
    """A TOML config for a collector on the test servers.

    `alerts` adds keys to the [alerts] table; `extra` appends whole sections. `production`
    keeps the collector's own defaults (flush 1 s, backoff, stats every 10 s, INFO logging)
    instead of the tests' quicker ones: what the benchmarks measure.
    """
    path = tmp_path / f"fleet-{next(_ids)}.toml"
    quick = (
        ""
        if production
        else "flush_interval_s = 0.2\nwrite_backoff_initial_s = 0.2\nwrite_backoff_max_s = 2.0"
    )
    collector = "" if production else "stats_interval_s = 1.0"
    path.write_text(
        f"""
log_level = "{"INFO" if production else "DEBUG"}"

[site]
id = "allingtown"
name = "Allingtown"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
client_id = "{client_id or "collector-" + database}"

[influx]
url = "{influx.url}"
database = "{database}"
retention = "30d"
{quick}

[spool]
path = "{tmp_path / "spool.sqlite"}"

[collector]
{collector}

[http]
bind = "127.0.0.1:0"

[alerts]
state_path = "{tmp_path / "alerts.sqlite"}"
{alerts}
{extra}
"""
    )
    return path


def set_keys(path: Path, changes: dict[str, object]) -> None:
    """Set keys of a written config by dotted path (`{"influx.timeout_s": 600}`).

    A structured edit instead of a text replace, which silently does nothing when the text
    it looks for moves; the table must exist (a typo in the path fails the test)."""
    doc = tomlkit.parse(path.read_text())
    for dotted, value in changes.items():
        *tables, key = dotted.split(".")
        table: Any = doc
        for name in tables:
            table = table[name]  # KeyError: no such table in the config
        table[key] = value
    path.write_text(tomlkit.dumps(doc))


def settings_from(path: Path) -> FleetSettings:
    return load_settings(path, environ={})


@contextmanager
def running_collector(settings: FleetSettings, broker: MosquittoServer) -> Iterator[Collector]:
    """An in-process collector, subscribed before the block starts."""
    since = broker.log_offset()
    collector = Collector(settings)
    undo = collector.start()
    try:
        broker.wait_subscribed(settings.mqtt.client_id, "owntracks/+/+", since=since)
        yield collector
    finally:
        undo()


@contextmanager
def publisher(settings: FleetSettings, name: str = "pub") -> Iterator[MqttLink]:
    link = MqttLink(
        settings.mqtt, client_id=f"test-{name}-{os.getpid()}-{next(_ids)}", persistent=True
    )
    undo = link.start()
    assert link.wait_connected(10), "publisher could not connect"
    try:
        yield link
    finally:
        assert link.flush(30), "publisher could not deliver every message"
        undo()


class Listener:
    """Every message on a topic filter, in arrival order (dead letters, alerts, availability).

    `payloads()` and `json()` give what was published while listening; retained messages the
    broker kept from before (on a shared broker, possibly another test's) only on request.
    `on_message`, if given, sees each message too (on paho's thread).
    """

    def __init__(
        self,
        settings: FleetSettings,
        broker: MosquittoServer,
        topic: str,
        *,
        persistent: bool = False,
        on_message: Callable[[Inbound], None] | None = None,
    ) -> None:
        self.messages: list[Inbound] = []
        self._lock = threading.Lock()
        self._hook = on_message
        self.client_id = f"test-listen-{os.getpid()}-{next(_ids)}"
        since = broker.log_offset()
        self._link = MqttLink(
            settings.mqtt,
            client_id=self.client_id,
            persistent=persistent,
            subscriptions=[topic],
            on_message=self._on_message,
        )
        self._undo = self._link.start()
        broker.wait_subscribed(self.client_id, topic, since=since)

    def _on_message(self, message: Inbound) -> None:
        with self._lock:
            self.messages.append(message)
        if self._hook is not None:
            self._hook(message)

    def payloads(self, topic: str | None = None, *, retained: bool = False) -> list[bytes]:
        with self._lock:
            return [
                m.payload
                for m in self.messages
                if (topic is None or m.topic == topic) and (retained or not m.retain)
            ]

    def json(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads(topic)]

    def close(self) -> None:
        self._undo()


def telemetry(device: str, seq: int, ts_ms: int, pct: float = 80.0, **groups: Any) -> bytes:
    body: dict[str, Any] = {
        "schema": 1,
        "device": device,
        "seq": seq,
        "ts": ts_ms / 1000,
        "battery": {"pct": pct, "charging": False},
    }
    body.update(groups)
    return json.dumps(body).encode()
