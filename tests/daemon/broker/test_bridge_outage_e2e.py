"""Issue 12's demonstration: a sub-station bridged to headquarters, the central broker stopped
for 60 s while its agent keeps sending, everything real.

Two Mosquitto brokers from `fleet broker-config --role central|substation` (no TLS: the
bridge's TLS lines are another test's), the in-process collector on the central one with a
real InfluxDB and a real HTTP receiver as its notification route, and the site's agent (its
broker user, its retained availability "online", its will "offline") publishing 1,000
seq-numbered readings of four Segways at a steady pace to the sub-station's broker.

What the central broker's stop looks like from the collector (Mosquitto 2.0.11, measured,
see LinkReads): as it stops, the central broker publishes the bridge's "0" (its will) and the
collector reads it just before it loses its broker (T0); it sees nothing for the outage, and on
reconnecting (T1) reads the "0" twice more (queued in its session, and retained) until the
bridge reconnects ("1"; bridge backoff, at most restart_timeout's 15 s), after which the
sub-station's queued readings arrive. The engine judges no silence of its blind spell (T0..T1),
gives every device a full offline window from T1, and would count a "0" first read after T1
from T0 (daemon/alerts/offline.py; here it was known before T0 and keeps its own start). The test's alert settings are the
defaults but a short offline window, see ALERTS; the bridge reaches the centre through a
`Gate` the test keeps shut for longer than that window after T1, so that the link's hold of
the site's offline alerts is what keeps them quiet then, not luck in who reconnects first.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.config.alerts import Rule
from fleet.daemon import wire
from fleet.daemon.alerts.model import Action, AlertEvent
from fleet.daemon.collector.app import Collector
from fleet.daemon.mqtt import MqttLink
from tests.daemon.broker.helpers import (
    GeneratedMosquitto,
    Probe,
    broker_config,
    credential,
    fleet_toml,
)
from tests.harness.alerting import EngineProbe
from tests.harness.fleet import telemetry
from tests.harness.http_receiver import HttpReceiver
from tests.harness.process import free_port
from tests.harness.servers import InfluxServer
from tests.harness.waiting import wait_until

SITE = "downtown"
AGENT = "dock-d"
DEVICES = ("dt-1", "dt-2", "dt-3", "dt-4")
READINGS = 1000
PERIOD_S = 0.07  # 1,000 readings in 70 s: they span the outage and the time after it
# After them the agent goes on (higher seq: not counted) so that no device falls silent
# before the test has judged: with a 10 s window that would be a real offline alert.
OUTAGE_S = 60.0  # the 60 s
BEFORE_STOP = 40  # readings stored at the centre before its broker is stopped
# A Segway at headquarters itself (behind no bridge: nothing holds it but the collector's own
# blindness), and the agent that feeds it, on the central broker.
HQ, HQ_SITE, HQ_AGENT = "hq-1", "allingtown", "dock-a"
REGISTRY = (
    "\n".join(f'[[devices]]\nid = "{d}"\nkind = "segway"\nsite = "{SITE}"\n' for d in DEVICES)
    + f'\n[[agents]]\nid = "{AGENT}"\nsite = "{SITE}"\ndevices = {json.dumps(list(DEVICES))}\n'
    + f'\n[[devices]]\nid = "{HQ}"\nkind = "segway"\nsite = "{HQ_SITE}"\n'
    + f'\n[[agents]]\nid = "{HQ_AGENT}"\nsite = "{HQ_SITE}"\ndevices = ["{HQ}"]\n'
)
LINK_ACK = wire.alert_ack_topic("fleet", SITE, SITE, str(Rule.SITE_LINK_DOWN))
# The default agent_down_for_s (60 s): the "0" counts from T0 at the latest, so the 60 s stop
# has fired site_link_down by the time the collector is back. offline_after_s = 10: far shorter than the outage
# (60 s), so an engine that judged the blind spell's silence would call every device offline;
# shorter than how long the Gate keeps the bridge out after T1 (OFFLINE_S + 2 s), so one that
# did not hold the site while its link is "0" would too; long enough for the backlog to drain
# after the "1" (about 2 s here).
# The headquarters Segway's own window, 55 s: shorter than the outage, so an engine judging the
# blind spell calls it offline while blind; longer than the test runs after T1 (about 30 s).
OFFLINE_S = 10
HQ_OFFLINE_S = 55
ALERTS = f"""
shifts = []

[alerts.kinds.segway]
offline_after_s = {OFFLINE_S}

[alerts.devices.{HQ}]
offline_after_s = {HQ_OFFLINE_S}
"""


class Gate:
    """A TCP relay from the sub-station's bridge to the central broker that the test can keep
    shut: a connection it takes while shut is closed at once (the bridge retries on its own
    backoff, 5-15 s), as a link still down would."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)  # so that close() ends the accept loop
        self.port = self._server.getsockname()[1]
        self.is_open = threading.Event()
        self.is_open.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="gate", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.is_open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()  # the central broker is down
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):  # one side gone: so is the relayed connection
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._server.close()
        for s in self._sockets:
            s.close()


@dataclass
class Site:
    central: GeneratedMosquitto
    sub: GeneratedMosquitto
    gate: Gate
    central_out: Path
    sub_out: Path
    collector_settings: FleetSettings
    agent_settings: FleetSettings

    def probe(self, broker: str, user: str) -> Probe:
        out = self.central_out if broker == "central" else self.sub_out
        port = (self.central if broker == "central" else self.sub).port
        return Probe(port, user, credential(out, user))


def _as_user(config: Path, out: Path, user: str) -> FleetSettings:
    env = {
        "FLEET_MQTT__USERNAME": user,
        "FLEET_MQTT__PASSWORD_FILE": str(out / "credentials" / user),
    }
    return load_settings(config, environ=env)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def site(
    tmp_path: Path, capsys: Any, influx: InfluxServer, tmp_db: str, receiver: HttpReceiver
) -> Iterator[Site]:
    central_port, sub_port = free_port(), free_port()
    (tmp_path / "c").mkdir()
    (tmp_path / "s").mkdir()
    route = json.dumps([f"json://127.0.0.1:{receiver.port}/hook?rto=2&cto=2"])
    central_config = fleet_toml(
        tmp_path / "c",
        port=central_port,
        registry=REGISTRY,
        broker=f'bridge_sites = ["{SITE}"]',
        extra=f"""
[influx]
url = "{influx.url}"
database = "{tmp_db}"
retention = "30d"
flush_interval_s = 0.2
write_backoff_initial_s = 0.2
write_backoff_max_s = 2.0

[spool]
path = "{tmp_path / "spool.sqlite"}"

[http]
bind = "127.0.0.1:0"

[alerts]
state_path = "{tmp_path / "alerts.sqlite"}"
{ALERTS}

[alerts.notify]
warning = {route}
critical = {route}
min_interval_s = 0
delivery_backoff_initial_s = 0.1
delivery_backoff_max_s = 0.5
""",
    )
    central_out = tmp_path / "c" / "broker"
    code, _, err = broker_config(central_config, central_out, capsys, "--role", "central")
    assert code == 0, err
    gate = Gate(central_port)
    sub_config = fleet_toml(
        tmp_path / "s",
        port=sub_port,
        registry=REGISTRY,
        extra=f"""
[broker.bridge]
address = "127.0.0.1"
port = {gate.port}
tls = false
password_file = "{central_out / "credentials" / f"bridge-{SITE}"}"
""",
    )
    sub_config.write_text(sub_config.read_text().replace('id = "allingtown"', f'id = "{SITE}"', 1))
    sub_out = tmp_path / "s" / "broker"
    code, _, err = broker_config(sub_config, sub_out, capsys, "--role", "substation")
    assert code == 0, err
    central = GeneratedMosquitto(central_out / "mosquitto.conf", central_port, tmp_path / "cm")
    sub = GeneratedMosquitto(sub_out / "mosquitto.conf", sub_port, tmp_path / "sm")
    central.start()
    sub.start()
    try:
        yield Site(
            central,
            sub,
            gate,
            central_out,
            sub_out,
            _as_user(central_config, central_out, "fleet-collector"),
            _as_user(sub_config, sub_out, AGENT),
        )
    finally:
        sub.stop()
        central.stop()
        gate.close()


class Agent:
    """The site's agent as the broker sees it: its user, "online" retained, "offline" as its
    will; a thread publishing READINGS readings round-robin over DEVICES every PERIOD_S."""

    def __init__(self, settings: FleetSettings) -> None:
        availability = wire.agent_availability_topic("fleet", SITE, AGENT)
        self.link = MqttLink(
            settings.mqtt, client_id=AGENT, persistent=True, will=(availability, b"offline")
        )
        self._undo = self.link.start()
        assert self.link.wait_connected(20), "the agent could not connect to its sub-station"
        self.link.publish(availability, b"online", retain=True)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        i = 0
        # The agent's own cadence (a schedule, not a wait for something to happen); past
        # READINGS it goes on until closed.
        while not self._stop.wait(max(0.0, start + i * PERIOD_S - time.monotonic())):
            device, seq = DEVICES[i % len(DEVICES)], i // len(DEVICES) + 1
            topic = wire.telemetry_topic("fleet", SITE, "segway", device)
            self.link.publish(topic, telemetry(device, seq, int(time.time() * 1000)))
            i += 1
            self.sent = i

    def wait_all_sent(self, timeout: float) -> None:
        wait_until(lambda: self.sent >= READINGS, timeout=timeout, message="all sent")
        assert self.link.flush(30), "the sub-station did not acknowledge every reading"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._undo()


class LinkReads:
    """Each state of the site's link the engine was given, and when: before the collector's
    blind spell ("before"), during it ("blind": read before T0, judged after) or after T1."""

    def __init__(self, collector: Collector) -> None:
        assert collector.alerts is not None
        engine = collector.alerts.engine
        self.reads: list[tuple[bool, str]] = []
        given = engine.agent_availability  # EngineProbe's, which calls the real one

        def agent_availability(
            site: str, agent: str, online: bool, now_ms: int, rule: Rule = Rule.AGENT_DOWN
        ) -> list[AlertEvent]:
            if rule is Rule.SITE_LINK_DOWN:
                # On the alert thread, which also applies the connection changes: in order.
                c = engine.counters
                phase = "before" if not c.blind_spells else "after" if c.blind_ms else "blind"
                self.reads.append((online, phase))
            return given(site, agent, online, now_ms, rule)

        engine.agent_availability = agent_availability  # type: ignore[method-assign]


def stored(influx: InfluxServer, db: str) -> list[tuple[str, int]]:
    """The first READINGS readings stored (the ones the agent sends after them are not)."""
    last = READINGS // len(DEVICES)
    rows = influx.rows(
        f"SELECT seq FROM battery WHERE site = '{SITE}' AND seq <= {last} GROUP BY device", db
    )
    return sorted((r["device"], int(r["seq"])) for r in rows)


def hooks(receiver: HttpReceiver) -> list[dict[str, Any]]:
    with receiver._lock:  # appended from the receiver's threads
        return [json.loads(r.body) for r in receiver.requests if r.path == "/hook"]


def test_the_central_broker_stopped_for_60_s_loses_nothing_and_raises_one_link_alert(
    site: Site, influx: InfluxServer, tmp_db: str, receiver: HttpReceiver
):
    # The generated bridge's backoff cap bounds how long after the restart the backlog waits.
    assert "restart_timeout 5 15" in (site.sub_out / "mosquitto.conf").read_text().splitlines()
    collector = Collector(site.collector_settings)
    assert collector.alerts is not None
    engine = EngineProbe(collector)  # records what the real engine was given and decided
    link_reads = LinkReads(collector)
    undo = collector.start()
    agent: Agent | None = None
    probes: list[Probe] = []
    try:
        # The retained "1" of the bridge: the collector's subscriptions are in place.
        engine.wait_agent(SITE, True, timeout=30)
        board = site.probe("sub", "ops")  # the sub-station's own board, an ack user there
        probes.append(board)
        assert not board.connect().is_failure
        board.subscribe(f"fleet/v1/{SITE}/alerts/#")

        agent = Agent(site.agent_settings)
        agent.start()
        wait_until(
            lambda: len(stored(influx, tmp_db)) >= BEFORE_STOP,
            timeout=30,
            message="readings flowing to the centre before the outage",
        )

        hq = site.probe("central", HQ_AGENT)  # heard once, just before the stop
        probes.append(hq)
        assert not hq.connect().is_failure
        hq_ts = int(time.time() * 1000)
        topic = wire.telemetry_topic("fleet", HQ_SITE, "segway", HQ)
        assert hq.publish(topic, telemetry(HQ, 1, hq_ts)) == 0
        engine.wait_observed(HQ, hq_ts, timeout=20)

        site.central.stop()
        site.gate.is_open.clear()  # and the bridge stays out until the test says (below)
        down_at = time.monotonic()
        wait_until(lambda: not collector.link.connected, timeout=10, message="collector cut off")
        # The outage itself is the point of the test: the one timed pause.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        site.central.start()  # same port, same persistence directory
        outage = time.monotonic() - down_at
        assert outage >= OUTAGE_S
        # The outage held a backlog at the sub-station: most of the readings sent meanwhile.
        held = agent.sent - len(stored(influx, tmp_db))
        assert held >= OUTAGE_S / PERIOD_S * 0.8, (held, agent.sent)

        wait_until(lambda: collector.link.connected, timeout=30, message="collector back")
        t1_ms = int(time.time() * 1000)  # the collector's clock, just after T1
        # The bridge's "0", read after the restart (retained and queued at the centre).
        wait_until(lambda: (False, "after") in link_reads.reads, timeout=30, message="0 after T1")
        seen_down = time.monotonic()
        # Counted from T0 (or, read before T0 as the centre stopped, from then): with the
        # default 60 s hold-down it has fired by now, while the bridge is still out.
        wait_until(
            lambda: [e.action for e in engine.events if e.alert.rule == Rule.SITE_LINK_DOWN],
            timeout=10,
            message="site_link_down fired on reading the 0",
        )
        ops = site.probe("central", "ops")  # an acknowledgement made at the centre
        probes.append(ops)
        assert not ops.connect().is_failure
        assert ops.publish(LINK_ACK, b"duty officer") == 0
        # The link stays down for longer than the offline window after the collector sees
        # again: only the link's hold keeps the site's devices from being called offline now.
        engine.wait_tick(t1_ms + (OFFLINE_S + 2) * 1000, timeout=OFFLINE_S + 20)
        with engine._lock:
            early = [(e.action, e.alert.device, e.alert.rule) for e in engine.events]
        assert early == [(Action.FIRE, SITE, Rule.SITE_LINK_DOWN)], early
        site.gate.is_open.set()
        wait_until(  # the bridge back: "1", after that "0"
            lambda: engine.agents[engine.agents.index((SITE, False)) :].count((SITE, True)),
            timeout=40,
            message="the bridge's 1 after its 0",
        )
        link_down_s = time.monotonic() - seen_down

        agent.wait_all_sent(timeout=60)
        wait_until(
            lambda: len(stored(influx, tmp_db)) >= READINGS,
            timeout=60,
            message="all readings at the centre",
        )
        expected = sorted(
            (DEVICES[i % len(DEVICES)], i // len(DEVICES) + 1) for i in range(READINGS)
        )
        assert stored(influx, tmp_db) == expected  # each once: none missing, none twice

        # The acknowledgement crossed down to the sub-station.
        wait_until(
            lambda: board.payloads(LINK_ACK) == [b"duty officer"],
            timeout=30,
            message="the centre's ack at the sub-station",
        )

        # One site_link_down fired and resolved, both notified; nothing else told anyone.
        wait_until(lambda: len(hooks(receiver)) >= 2, timeout=20, message="two notifications")
        engine.nudge()
        wait_until(collector.alerts.notifier.idle, timeout=20, message="notifier idle")
        with engine._lock:
            link_events = [e for e in engine.events if e.alert.rule == Rule.SITE_LINK_DOWN]
        assert [e.action for e in link_events if e.action is not Action.ACKNOWLEDGED] == [
            Action.FIRE,
            Action.RESOLVE,
        ], link_events
        assert all(e.notify for e in link_events if e.action is not Action.ACKNOWLEDGED)
        notices = hooks(receiver)
        assert [n["title"].split("]")[0] + "]" for n in notices] == ["[critical]", "[resolved]"]
        assert "link to the central broker down" in notices[0]["message"], notices
        assert LINK_ACK in notices[0]["message"], notices  # how to acknowledge it
        rules = {(a.device, a.rule) for a in collector.alerts.engine.alerts()}
        assert rules == {(SITE, str(Rule.SITE_LINK_DOWN))}, rules  # no offline, no agent_down
        print(
            f"outage {outage:.1f} s; link seen down {link_down_s:.1f} s after the restart; "
            f"{READINGS} readings stored once; the link's states as the engine read them: "
            f"{link_reads.reads}"
        )
    finally:
        for p in probes:
            p.close()
        if agent is not None:
            agent.close()
        undo()
