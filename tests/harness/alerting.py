"""Helpers for alert scenarios through the real collector on a real Mosquitto.

The collector runs on a `FakeClock` that the test moves forward: hours of a shift
pass in milliseconds. Its alert thread ticks about once a second of *real* time
reading that clock, so a test that moves the clock waits for the next tick to
have seen it (`EngineProbe.wait_tick`) before judging what happened - which also
makes "nothing happened" checkable. Notifications go through the real Notifier to
a real SMTP server and a real HTTP receiver.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from fleet.config import FleetSettings
from fleet.config.alerts import Rule
from fleet.daemon import wire
from fleet.daemon.alerts.model import AlertEvent
from fleet.daemon.alerts.notify import Notifier, RetryPolicy
from fleet.daemon.collector.app import Collector
from fleet.daemon.mqtt import Inbound, MqttLink
from fleet.daemon.wire import DecodedReading
from tests.harness.fleet import Listener
from tests.harness.http_receiver import HttpReceiver
from tests.harness.servers import MosquittoServer
from tests.harness.smtp import SmtpServer
from tests.harness.waiting import wait_until

PREFIX = "fleet"
SITE = "allingtown"
ZONE = ZoneInfo("America/New_York")  # the engine's default zone
SMTP_USER, SMTP_PASSWORD = "station", "Pw-alert-7zq"
_ids = itertools.count(1)


def local_ms(hhmm: str, day: date | None = None) -> int:
    """Epoch ms of a local wall time (today's date unless `day`) in the engine's zone.

    Today keeps the readings within the database's retention, which a fixed date would
    leave sooner or later.
    """
    day = day or datetime.now(ZONE).date()
    return int(datetime.combine(day, time.fromisoformat(hhmm), tzinfo=ZONE).timestamp() * 1000)


class FakeClock:
    """The collector's clock (decoder and alert engine): call it for now in ms."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    @property
    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> int:
        with self._lock:
            self._now += round(seconds * 1000)
            return self._now

    def set(self, at_ms: int) -> int:
        """Move to `at_ms` (never backwards: time does not run back for the collector)."""
        with self._lock:
            if at_ms < self._now:
                raise ValueError("a FakeClock only moves forward")
            self._now = at_ms
            return self._now


# --- payloads ------------------------------------------------------------------------------------


def reading(
    device: str,
    seq: int,
    ts_ms: int,
    *,
    pct: float,
    charging: bool = False,
    state: str = "riding",
    error_code: int = 0,
) -> bytes:
    """Telemetry JSON as an agent sends it: battery and status groups."""
    body: dict[str, Any] = {
        "schema": 1,
        "device": device,
        "seq": seq,
        "ts": ts_ms / 1000,
        "battery": {"pct": pct, "charging": charging},
        "status": {"state": state, "error_code": error_code},
    }
    return json.dumps(body).encode()


def telemetry_topic(kind: str, device: str, site: str = SITE) -> str:
    return wire.telemetry_topic(PREFIX, site, kind, device)


def agent_topic(agent: str, site: str = SITE) -> str:
    return wire.agent_availability_topic(PREFIX, site, agent)


def ack_topic(device: str, rule: str, site: str = SITE) -> str:
    return wire.alert_ack_topic(PREFIX, site, device, rule)


def mailto(smtp: SmtpServer, to: str = "maint@fleet.example") -> str:
    return (
        f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
        f"?from=alerts@fleet.example&to={to}&cto=2"
    )


def webhook(receiver: HttpReceiver, path: str = "hook") -> str:
    return f"json://127.0.0.1:{receiver.port}/{path}?rto=2&cto=2"


def toml_list(urls: list[str]) -> str:
    return "[" + ", ".join(json.dumps(u) for u in urls) + "]"


# --- observing the collector ---------------------------------------------------------------------


class AlertTopics:
    """Every alert JSON published on `fleet/v1/+/alerts/+/+` while it listens.

    Retained alerts delivered on subscribing are earlier tests' state and are skipped; the
    collector's own publications arrive live (retain flag clear).
    """

    def __init__(self, settings: FleetSettings, broker: MosquittoServer) -> None:
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        topic = f"{PREFIX}/{wire.VERSION}/+/alerts/+/+"
        self._listener = Listener(settings, broker, topic, on_message=self._on_message)

    def _on_message(self, message: Inbound) -> None:
        if message.retain or not message.payload:
            return  # what earlier tests left on the broker, or a cleared topic
        alert = json.loads(message.payload)
        alert["_topic"] = message.topic
        with self._lock:
            self.history.append(alert)

    def of(self, device: str, rule: str | None = None) -> list[dict[str, Any]]:
        """Alert JSON received for a device (and rule), oldest first."""
        with self._lock:
            return [
                a
                for a in self.history
                if a["device"] == device and (rule is None or a["rule"] == rule)
            ]

    def latest(self, device: str, rule: str) -> dict[str, Any] | None:
        found = self.of(device, rule)
        return found[-1] if found else None

    def wait(
        self, device: str, rule: str, state: str, *, timeout: float = 20, **fields: Any
    ) -> dict[str, Any]:
        """Wait until the newest alert of (device, rule) is in `state` (and has `fields`)."""

        def ready() -> dict[str, Any]:
            a = self.latest(device, rule)
            if a is None or a["state"] != state:
                return {}
            return a if all(a[k] == v for k, v in fields.items()) else {}

        return wait_until(ready, timeout=timeout, message=f"{device}/{rule} {state} {fields}")

    def close(self) -> None:
        self._listener.close()


class EngineProbe:
    """Records what the collector's real alert engine was given and decided.

    It wraps the engine's own `observe_batch` and `tick` (they still run, unchanged) so a
    test can wait until a reading was evaluated or a tick saw the clock's time.
    """

    def __init__(self, collector: Collector) -> None:
        assert collector.alerts is not None, "alerts are disabled in this config"
        self._service = collector.alerts
        engine = collector.alerts.engine
        self._lock = threading.Lock()
        self.last_tick_ms = -1
        self.observed: set[tuple[str, int]] = set()
        self.agents: list[tuple[str, bool]] = []
        self.events: list[AlertEvent] = []
        real_observe, real_tick = engine.observe_batch, engine.tick
        real_agent = engine.agent_availability

        def observe(
            readings: Sequence[DecodedReading],
            now_ms: int,
            on_error: Callable[[DecodedReading, Exception], None] | None = None,
        ) -> list[AlertEvent]:
            events = real_observe(readings, now_ms, on_error)
            with self._lock:
                self.observed.update((r.device, r.ts_ms) for r in readings)
                self.events.extend(events)
            return events

        def tick(now_ms: int) -> list[AlertEvent]:
            events = real_tick(now_ms)
            with self._lock:
                self.last_tick_ms = max(self.last_tick_ms, now_ms)
                self.events.extend(events)
            return events

        def agent_availability(
            site: str, agent: str, online: bool, now_ms: int, rule: Rule = Rule.AGENT_DOWN
        ) -> list[AlertEvent]:
            events = real_agent(site, agent, online, now_ms, rule)
            with self._lock:
                self.agents.append((agent, online))
                self.events.extend(events)
            return events

        engine.observe_batch = observe  # type: ignore[method-assign]
        engine.agent_availability = agent_availability  # type: ignore[method-assign]
        engine.tick = tick  # type: ignore[method-assign]

    def nudge(self) -> None:
        """Wake the alert thread now rather than after up to a second (an ack of nothing)."""
        self._service.acknowledge("-nudge-", "-", "probe")

    def wait_tick(self, at_ms: int, timeout: float = 20) -> None:
        self.nudge()
        wait_until(
            lambda: self.last_tick_ms >= at_ms, timeout=timeout, message=f"a tick at {at_ms}"
        )

    def wait_agent(self, agent: str, online: bool, timeout: float = 20) -> None:
        wait_until(
            lambda: (agent, online) in self.agents,
            timeout=timeout,
            message=f"the engine heard agent {agent} online={online}",
        )

    def wait_observed(self, device: str, ts_ms: int, timeout: float = 20) -> None:
        wait_until(
            lambda: (device, ts_ms) in self.observed,
            timeout=timeout,
            message=f"the engine evaluated {device}@{ts_ms}",
        )


@dataclass(frozen=True)
class Notice:
    """One notification as a person got it: the mail (subject, text) or the webhook JSON."""

    title: str
    body: str


class Mailbox:
    """Notices by mail and by webhook, read back from the real servers."""

    def __init__(self, smtp: SmtpServer, receiver: HttpReceiver) -> None:
        self.smtp = smtp
        self.receiver = receiver

    def mails(self, to: str | None = None) -> list[Notice]:
        return [
            Notice(m.subject, m.text.strip())
            for m in self.smtp.received()
            if to is None or to in m.rcpt_tos
        ]

    def hooks(self, path: str = "/hook") -> list[Notice]:
        out = []
        with self.receiver._lock:  # its request list is appended from server threads
            requests = [r for r in self.receiver.requests if r.path == path]
        for r in requests:
            doc = json.loads(r.body)
            out.append(Notice(doc["title"], doc["message"].strip()))
        return out


def body(message: str, device: str, rule: str) -> str:
    """A fire/repeat notice's body: the message and how to acknowledge."""
    topic = wire.alert_topic(PREFIX, SITE, device, rule)
    return f"{message}\n\nAcknowledge: publish your name to {topic}/ack"


# --- the rig -------------------------------------------------------------------------------------


class Rig:
    """A collector on a fake clock, a publisher, the alert topics, the probe."""

    def __init__(
        self, settings: FleetSettings, broker: MosquittoServer, clock: FakeClock, pub: MqttLink
    ) -> None:
        self.settings, self.broker, self.clock, self.pub = settings, broker, clock, pub
        self.collector: Collector | None = None
        self.probe: EngineProbe | None = None
        self._undo: Callable[[], None] | None = None
        self._seq = itertools.count(1)

    def start(self) -> Rig:
        collector = Collector(self.settings, clock_ms=self.clock)
        assert collector.alerts is not None
        # The production notifier keeps apprise's throttle (5.5 s between two mails through
        # one SMTP URL); the same Notifier without it and with quick retries keeps tests quick.
        n = self.settings.alerts.notify
        collector.alerts.notifier = Notifier(
            n.routes(),
            retry=RetryPolicy(attempts=4, initial_s=0.05, max_s=0.2),
            min_interval_s=0.0,
        )
        self.probe = EngineProbe(collector)
        since = self.broker.log_offset()
        self._undo = collector.start()
        self.collector = collector
        client_id = self.settings.mqtt.client_id
        for topic in wire.control_subscriptions(PREFIX):
            self.broker.wait_subscribed(client_id, topic, since=since)
        self.probe.wait_tick(self.clock.now_ms)
        return self

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    @property
    def notifier(self) -> Notifier:
        assert self.collector is not None
        assert self.collector.alerts is not None
        return self.collector.alerts.notifier

    def wait_delivered(self, timeout: float = 10) -> None:
        """Every notification decided so far has gone out (or failed for good)."""
        self.probe_or_fail().nudge()
        wait_until(self.notifier.idle, timeout=timeout, message="notifier idle")

    def probe_or_fail(self) -> EngineProbe:
        assert self.probe is not None, "rig not started"
        return self.probe

    def send(self, kind: str, device: str, *, pct: float, site: str = SITE, **status: Any) -> int:
        """Publish a reading stamped with the clock's now; wait until the engine evaluated it."""
        ts = self.clock.now_ms
        payload = reading(device, next(self._seq), ts, pct=pct, **status)
        self.pub.publish(telemetry_topic(kind, device, site), payload, qos=1)
        self.probe_or_fail().wait_observed(device, ts)
        return ts

    def advance(self, seconds: float) -> int:
        """Move the clock and wait for a tick that saw the new time."""
        now = self.clock.advance(seconds)
        self.probe_or_fail().wait_tick(now)
        return now

    def at(self, hhmm: str, day: date | None = None) -> int:
        """Move the clock to a local wall time and wait for a tick that saw it."""
        now = self.clock.set(local_ms(hhmm, day))
        self.probe_or_fail().wait_tick(now)
        return now


@contextmanager
def rig(settings: FleetSettings, broker: MosquittoServer, start_ms: int) -> Iterator[Rig]:
    """A started `Rig` on a FakeClock at `start_ms`; stopped at the end of the block."""
    link = MqttLink(settings.mqtt, client_id=f"test-pub-{os.getpid()}-{next(_ids)}")
    undo_link = link.start()
    assert link.wait_connected(10), "publisher could not connect"
    r = Rig(settings, broker, FakeClock(start_ms), link)
    try:
        yield r.start()
    finally:
        try:
            r.stop()
        finally:
            link.flush(10)
            undo_link()
