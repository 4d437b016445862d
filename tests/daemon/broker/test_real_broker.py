"""The generated configuration on the real Mosquitto 2.0, over TLS, as `mosquitto -c` runs it.

Anonymous clients and wrong passwords are refused; a real agent publishes its own devices'
telemetry and the real collector stores it in a real InfluxDB; an agent cannot publish for
another device or site, nor an alert, an acknowledgement or a dead letter; an OwnTracks
user cannot publish as another, nor read another's positions; an ack user acknowledges
and the collector takes it.

A refused publish is proven twice: the MQTT 5 PUBACK says "not authorized" (0x87), and a
witness allowed to read everything never gets it, although it gets a sentinel published
after it on the same connection (Mosquitto keeps one connection's messages in order).
"""

from __future__ import annotations

import json
import time

import pytest

from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from tests.daemon.broker.helpers import NOT_AUTHORIZED
from tests.daemon.broker.secured import (
    OK,
    Secured,
    connected,
    running,
    stored,
    topic,
    until,
)
from tests.harness.agent import Script, running_agent, scripted_spec
from tests.harness.fleet import telemetry
from tests.harness.servers import InfluxServer
from tests.harness.waiting import wait_until


def test_anonymous_clients_and_wrong_passwords_are_refused(secured: Secured) -> None:
    for probe in [
        secured.probe(None),
        secured.probe(None, v5=False),
        secured.probe("dock-a", password="not-the-password-at-all"),
        secured.probe("mallory", password="not-the-password-at-all"),
    ]:
        rc = probe.connect()
        probe.close()
        assert rc.is_failure
        assert rc.value == NOT_AUTHORIZED  # paho maps MQTT 3.1.1's 5 to it too
    wait_until(
        lambda: secured.broker.log_text().count("disconnected, not authorised") == 4,
        message="four refusals in mosquitto's log",
    )
    with connected(secured.probe("dock-a")):  # the generated hash is one the broker takes
        pass


def test_an_agent_publishes_its_devices_and_the_collector_stores_them_over_tls(
    secured: Secured, influx: InfluxServer, tmp_db: str
) -> None:
    collector_settings = secured.settings("fleet-collector")
    agent_settings = secured.settings("dock-a")
    assert collector_settings.mqtt.tls.enabled
    assert collector_settings.mqtt.password is not None
    script = Script(device="sw-01", interval_s=0.1)
    with running_agent(Agent(agent_settings, specs=[scripted_spec(script)])):
        with running(collector_settings) as collector:
            rows = wait_until(
                lambda: stored(influx, tmp_db, "SELECT pct, device FROM battery"),
                timeout=30,
                message="sw-01's readings in InfluxDB",
            )
            assert {r["device"] for r in rows} == {"sw-01"}
            assert collector.link.connected
            assert collector.session_lost == 0
        # Its retained availability and its device's were taken (a will on a topic it may
        # not write would have cost it the connection). The witness logs in as the collector
        # only once the collector is gone: the broker names sessions by user name, so one
        # user has one connection at a time.
        availability = [
            wire.agent_availability_topic("fleet", "allingtown", "dock-a"),
            wire.availability_topic("fleet", "allingtown", "segway", "sw-01"),
        ]
        with connected(secured.probe("fleet-collector")) as witness:
            for retained in availability:
                witness.subscribe(retained)
            wait_until(
                lambda: [witness.payloads(t) for t in availability] == [[b"online"]] * 2,
                message="the agent's and sw-01's retained availability",
            )


FORBIDDEN_TO_DOCK_A = [
    topic("westhaven", "segway", "sw-02"),  # another agent's device, another site
    topic("westhaven", "segway", "sw-01"),  # its own device under another site
    topic("allingtown", "handheld", "sw-01"),  # ... or another kind
    topic("allingtown", "segway", "sw-99"),  # a device nobody registered
    wire.agent_availability_topic("fleet", "westhaven", "dock-w"),
    wire.availability_topic("fleet", "westhaven", "segway", "sw-02"),
    wire.alert_topic("fleet", "allingtown", "sw-01", "battery_low"),
    wire.alert_ack_topic("fleet", "allingtown", "sw-01", "battery_low"),
    wire.deadletter_topic("fleet", "allingtown"),
    "owntracks/dock-a/phone",
]


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt3.1.1"])
def test_an_agent_cannot_publish_for_others(secured: Secured, v5: bool) -> None:
    own = topic("allingtown", "segway", "sw-01")
    with connected(secured.probe("fleet-collector")) as witness, connected(
        secured.probe("dock-a", v5=v5)
    ) as agent:  # fmt: skip
        for allowed in ("fleet/#", "owntracks/#"):
            witness.subscribe(allowed)
        for forbidden in FORBIDDEN_TO_DOCK_A:
            rc = agent.publish(forbidden, b"forged", retain=forbidden.endswith("availability"))
            # MQTT 3.1.1 has no reason code: Mosquitto acknowledges and drops it.
            assert rc == (NOT_AUTHORIZED if v5 else 0), forbidden
        assert agent.publish(own, b"sentinel") == 0
        wait_until(lambda: witness.payloads(own) == [b"sentinel"], message="the sentinel")
        assert witness.topics() == [own]


def owntracks(lat: float, batt: int) -> bytes:
    doc = {"_type": "location", "lat": lat, "lon": -72.947, "tst": int(time.time()), "batt": batt}
    return json.dumps(doc).encode()


def test_an_owntracks_user_is_only_itself(
    secured: Secured, influx: InfluxServer, tmp_db: str
) -> None:
    with (
        running(secured.settings("fleet-collector")),
        connected(secured.probe("alice")) as alice,
        connected(secured.probe("bob")) as bob,
    ):
        alice.subscribe("owntracks/+/+")  # the app asks for everyone: it gets only itself
        assert alice.publish("owntracks/bob/phone", owntracks(41.0, 11)) == NOT_AUTHORIZED
        assert alice.publish(topic("allingtown", "handheld", "hh-02"), b"{}") == NOT_AUTHORIZED
        rows = until(
            lambda: alice.publish("owntracks/alice/phone", owntracks(41.27, 80)),
            lambda: stored(influx, tmp_db, "SELECT lat, device FROM location"),
            "alice's position stored as hh-01",
        )
        assert [(r["device"], r["lat"]) for r in rows] == [("hh-01", 41.27)]
        assert bob.publish("owntracks/bob/phone", owntracks(41.5, 50)) in OK
        wait_until(
            lambda: stored(influx, tmp_db, "SELECT lat FROM location WHERE device = 'hh-02'"),
            message="bob's position stored",
        )
        # The broker handles bob's position before this echo of alice's: once the echo is
        # here, bob's position would have been too, had alice been allowed to read it.
        echoes = len(alice.payloads("owntracks/alice/phone"))
        assert alice.publish("owntracks/alice/phone", owntracks(41.28, 79)) in OK
        wait_until(lambda: len(alice.payloads("owntracks/alice/phone")) > echoes, message="echo")
        assert set(alice.topics()) == {"owntracks/alice/phone"}  # never bob's position


def test_an_ack_user_acknowledges_and_an_agent_cannot(
    secured: Secured, influx: InfluxServer, tmp_db: str
) -> None:
    alert = wire.alert_topic("fleet", "allingtown", "sw-01", "battery_critical")
    now = int(time.time() * 1000)
    with (
        running(secured.settings("fleet-collector")) as collector,
        connected(secured.probe("ops")) as ops,
        connected(secured.probe("dock-a")) as agent,
    ):
        ops.subscribe("fleet/v1/+/alerts/#")
        assert collector.alerts is not None
        until(
            lambda: agent.publish(topic("allingtown", "segway", "sw-01"), telemetry("sw-01", 1, now, pct=5.0)),
            lambda: ops.payloads(alert),
            "battery_critical of sw-01 seen by the ack user",
        )  # fmt: skip
        assert json.loads(ops.payloads(alert)[-1])["state"] == "firing"
        assert agent.publish(alert + "/ack", b"mallory") == NOT_AUTHORIZED
        assert ops.publish(alert + "/ack", b"Olivia") in OK

        def acknowledged_by() -> list[str]:
            return [json.loads(p)["acknowledged_by"] for p in ops.payloads(alert)]

        wait_until(lambda: "Olivia" in acknowledged_by(), message="the acknowledgement")
        assert "mallory" not in acknowledged_by()
        assert collector.alerts.counters.acks == 1


def test_readings_queued_for_the_collector_survive_a_broker_restart(
    secured: Secured, influx: InfluxServer, tmp_db: str
) -> None:
    """persistence, persistence_location and the queue limits as generated, at work."""
    own = topic("allingtown", "segway", "sw-01")
    now = int(time.time() * 1000)

    def seqs() -> list[int]:
        return sorted(r["seq"] for r in stored(influx, tmp_db, "SELECT seq FROM battery"))

    settings = secured.settings("fleet-collector")
    with running(settings), connected(secured.probe("dock-a")) as agent:
        until(lambda: agent.publish(own, telemetry("sw-01", 1, now)), seqs, "seq 1 stored")
    with connected(secured.probe("dock-a")) as agent:  # the collector is away: queued for it
        for seq in range(2, 52):
            assert agent.publish(own, telemetry("sw-01", seq, now + seq)) == 0
    secured.broker.restart()  # a clean stop saves the database
    with running(settings):
        wait_until(lambda: seqs() == list(range(1, 52)), timeout=30, message="all 51 stored")
