"""Publishes the generated broker refuses are seen, counted and set aside, never taken as sent.

Mosquitto 2.0 answers an MQTT 5 publish its ACL forbids with PUBACK "not authorized"
(0x87) and keeps the connection; paho forgets the message as if delivered. The MQTT link
keeps the reason code; the agent's forwarder moves a refused reading out of the outbox
queue into its `refused` table and goes on; `fleet deadletters replay` leaves a refused
entry unreplayed. Under MQTT 3.1.1 the broker acknowledges and drops: nothing can tell.
"""

from __future__ import annotations

import json
import logging

import pytest

from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from fleet.daemon.cli import main as fleet
from fleet.daemon.mqtt import MqttLink
from fleet.daemon.mqtt_refusals import AVAILABILITY, TELEMETRY
from tests.daemon.broker.helpers import NOT_AUTHORIZED
from tests.daemon.broker.secured import Secured, connected, keep, kept, topic
from tests.harness.agent import Script, running_agent, scripted_spec
from tests.harness.waiting import wait_until

OWN = topic("allingtown", "segway", "sw-01")  # dock-a's device
NOT_OWN = topic("westhaven", "segway", "sw-02")  # dock-w's
SECRET_PAYLOAD = b'{"not": "for the log 7d1e"}'


def test_the_link_sees_a_refusal_with_its_topic_and_reason(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    link = MqttLink(secured.settings("dock-a").mqtt, client_id="t-link", persistent=False)
    stop = link.start()
    try:
        assert link.wait_connected(10)
        with caplog.at_level(logging.WARNING, logger="fleet.daemon.mqtt"):
            refused = [link.publish_tracked(NOT_OWN, SECRET_PAYLOAD) for _ in range(3)]
            accepted = link.publish_tracked(OWN, SECRET_PAYLOAD)
            alert = link.publish_tracked(
                wire.alert_topic("fleet", "allingtown", "sw-01", "x"), b"{}"
            )
            assert link.flush(10)
        got = link.take_refusals([*refused, accepted, alert])
        assert sorted(got) == sorted([*refused, alert])
        assert {(r.code, r.reason) for r in got.values()} == {(NOT_AUTHORIZED, "Not authorized")}
        assert got[refused[0]].topic == NOT_OWN
        assert link.take_refusals(refused) == {}  # taken once
        assert link.refusals.counts() == {TELEMETRY: 3, "alert": 1}
        lines = [r.getMessage() for r in caplog.records]
        # One line per topic class at first (the next within a minute are only counted).
        assert len([line for line in lines if "telemetry publish to" in line]) == 1
        assert any(NOT_OWN in line and "Not authorized (0x87)" in line for line in lines)
        assert not any("7d1e" in line for line in lines)  # never the payload
    finally:
        stop()


def test_under_mqtt_3_1_1_a_refusal_cannot_be_seen(secured: Secured) -> None:
    mqtt = secured.settings("dock-a").mqtt.model_copy(update={"protocol": "3.1.1"})
    link = MqttLink(mqtt, client_id="t-link-3", persistent=False)
    stop = link.start()
    try:
        assert link.wait_connected(10)
        mid = link.publish_tracked(NOT_OWN, b"{}")
        assert link.flush(10)
        assert link.take_refusals([mid]) == {}  # acknowledged, dropped, indistinguishable
        assert link.refusals.total == 0
    finally:
        stop()


def test_the_agent_sets_refused_readings_aside_and_goes_on(secured: Secured) -> None:
    """dock-a reads sw-02 too, which its [[agents]] entry does not list: the broker refuses
    every sw-02 reading; sw-01's, interleaved with them, all get through."""
    own, other = Script(device="sw-01", readings=15), Script(device="sw-02", readings=15)
    agent = Agent(secured.settings("dock-a"), specs=[scripted_spec(own), scripted_spec(other)])
    with connected(secured.probe("fleet-collector")) as witness:
        witness.subscribe("fleet/v1/+/+/+/telemetry")
        with running_agent(agent):
            stats = agent.store.stats
            wait_until(
                lambda: stats.forwarded == 15 and stats.refused == 15,
                timeout=20,
                message="15 forwarded, 15 refused",
            )
            assert agent.store.depth().rows == 0  # nothing left blocking the queue
            refused = agent.store.on_worker(lambda box: box.refused(100)).result(10)
            assert (stats.accepted, stats.dropped, agent.store.held) == (30, 0, 0)
            counts = agent.link.refusals.counts()
        wait_until(lambda: len(witness.payloads(OWN)) == 15, message="sw-01's 15 readings")
    assert witness.topics() == [OWN] * 15  # none of sw-02's
    assert len(refused) == 15
    assert {(r.topic, r.reason) for r in refused} == {(NOT_OWN, "Not authorized (0x87)")}
    assert sorted(json.loads(r.payload)["seq"] for r in refused) == list(range(1, 16))
    # Its retained availability of sw-02 was refused too (published directly, not queued).
    assert counts[TELEMETRY] == 15
    assert counts[AVAILABILITY] >= 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_replay_leaves_an_entry_the_broker_refuses_unreplayed(
    secured: Secured,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
) -> None:
    settings = secured.settings("fleet-collector")
    # The replay user may write telemetry, not availability.
    keep(settings, OWN, wire.availability_topic("fleet", "allingtown", "segway", "sw-01"))
    monkeypatch.setenv("FLEET_MQTT__PROTOCOL", protocol)
    capsys.readouterr()
    password = str(secured.out / "credentials" / "fleet-collector-replay")
    code = fleet(
        ["deadletters", "replay", "--config", str(secured.config), "--mqtt-password-file", password]
    )
    out, err = capsys.readouterr()
    entries = kept(settings)
    if protocol == "5":
        assert code == 1
        assert "replayed 1 of 2" in out
        refused_id = entries[1].id if entries[1].topic.endswith("availability") else entries[0].id
        assert (
            f"the broker refused entry {refused_id} (fleet/v1/allingtown/segway/sw-01/"
            "availability): Not authorized (0x87); it stays unreplayed"
        ) in err
        assert {(k.topic.rsplit("/", 1)[1], k.replayed_ms is None) for k in entries} == {
            ("telemetry", False),
            ("availability", True),
        }
    else:
        assert code == 0, err
        assert "under MQTT 3.1.1 a broker acknowledges a publish it refuses" in out
        assert all(k.replayed_ms is not None for k in entries)  # it cannot know


def test_payload_of_refused_reading_is_logged_nowhere(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """The forwarder's own log line names the reason, not the reading."""
    script = Script(device="sw-02", readings=3)
    agent = Agent(secured.settings("dock-a"), specs=[scripted_spec(script)])
    with caplog.at_level(logging.DEBUG), running_agent(agent):
        wait_until(lambda: agent.store.stats.refused == 3, timeout=20, message="3 refused")
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("paho"))
    assert "refused table" in text
    assert '"battery"' not in text
