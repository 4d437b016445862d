"""Two real Mosquitto brokers from `fleet broker-config --role central|substation`, bridged.

The bridge runs without TLS here (the listener's TLS is shown in test_real_broker.py; the
bridge's bridge_cafile/bridge_tls_version lines are checked in the generated text below).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon import wire
from tests.daemon.broker.helpers import (
    GeneratedMosquitto,
    Probe,
    broker_config,
    credential,
    fleet_toml,
)
from tests.harness.process import free_port
from tests.harness.waiting import wait_until

SITE = "downtown"
DEVICES = ("dt-1", "dt-2")
REGISTRY = f"""
[[devices]]
id = "dt-1"
kind = "segway"
site = "{SITE}"

[[devices]]
id = "dt-2"
kind = "segway"
site = "{SITE}"

[[agents]]
id = "dock-d"
site = "{SITE}"
devices = ["dt-1", "dt-2"]
"""
LINK = wire.link_topic("fleet", SITE, f"bridge-{SITE}")
ACK = wire.alert_ack_topic("fleet", SITE, "dt-1", "offline")
ALERT = wire.alert_topic("fleet", SITE, "dt-1", "offline")


@dataclass
class Pair:
    central: GeneratedMosquitto
    sub: GeneratedMosquitto
    central_out: Path
    sub_out: Path
    central_config: Path
    sub_config: Path

    def probe(self, broker: str, user: str) -> Probe:
        out = self.central_out if broker == "central" else self.sub_out
        port = (self.central if broker == "central" else self.sub).port
        return Probe(port, user, credential(out, user))


@pytest.fixture
def pair(tmp_path: Path, capsys: Any) -> Iterator[Pair]:
    central_port, sub_port = free_port(), free_port()
    (tmp_path / "c").mkdir()
    (tmp_path / "s").mkdir()
    central_config = fleet_toml(
        tmp_path / "c",
        port=central_port,
        registry=REGISTRY,
        broker=f'bridge_sites = ["{SITE}"]',
    )
    central_out = tmp_path / "c" / "broker"
    code, stdout, err = broker_config(central_config, central_out, capsys, "--role", "central")
    assert code == 0, err
    assert f"bridge-{SITE}" in stdout
    sub_config = fleet_toml(
        tmp_path / "s",
        port=sub_port,
        registry=REGISTRY,
        extra=f"""
[broker.bridge]
address = "127.0.0.1"
port = {central_port}
tls = false
password_file = "{central_out / "credentials" / f"bridge-{SITE}"}"
""",
    )
    text = sub_config.read_text().replace('id = "allingtown"', f'id = "{SITE}"', 1)
    sub_config.write_text(text)
    sub_out = tmp_path / "s" / "broker"
    code, _, err = broker_config(sub_config, sub_out, capsys, "--role", "substation")
    assert code == 0, err
    central = GeneratedMosquitto(central_out / "mosquitto.conf", central_port, tmp_path / "cm")
    sub = GeneratedMosquitto(sub_out / "mosquitto.conf", sub_port, tmp_path / "sm")
    central.start()
    sub.start()
    try:
        yield Pair(central, sub, central_out, sub_out, central_config, sub_config)
    finally:
        sub.stop()
        central.stop()


def test_the_substation_conf_bridges_the_sites_topics_and_never_its_own_alerts(pair: Pair):
    conf = (pair.sub_out / "mosquitto.conf").read_text()
    topics = [line for line in conf.splitlines() if line.startswith("topic ")]
    assert topics == [
        f"topic fleet/v1/{SITE}/+/+/telemetry out 1",
        f"topic fleet/v1/{SITE}/+/+/availability out 1",
        f"topic fleet/v1/{SITE}/alerts/+/+ in 1",
        f"topic fleet/v1/{SITE}/alerts/+/+/ack both 1",
    ]
    for line in (
        "cleansession false",
        f"remote_clientid bridge-{SITE}",
        f"notification_topic {LINK}",
        "persistence true",
    ):
        assert line in conf.splitlines()
    # Mosquitto reads every line after `connection` as the bridge's: it comes last.
    assert conf.index("\nconnection ") > conf.index("\nlistener ")
    assert credential(pair.central_out, f"bridge-{SITE}") not in (pair.sub_out / "acl").read_text()


def test_readings_go_up_alerts_and_acks_come_down_and_the_link_is_reported(pair: Pair):
    # One client per user: the generated broker names sessions by user name, so a second
    # connection as the collector would replace this one.
    witness = pair.probe("central", "fleet-collector")
    assert not witness.connect().is_failure
    witness.subscribe(f"fleet/v1/{SITE}/#")
    # Mosquitto 2.0.11 publishes "1" retained at the centre once the bridge is up.
    wait_until(lambda: witness.payloads(LINK)[-1:] == [b"1"], timeout=30, message="link 1")

    board = pair.probe("sub", "ops")  # an ack user at the sub-station: its board
    assert not board.connect().is_failure
    board.subscribe(f"fleet/v1/{SITE}/alerts/#")
    agent = pair.probe("sub", "dock-d")
    assert not agent.connect().is_failure
    up = wire.telemetry_topic("fleet", SITE, "segway", "dt-1")
    assert agent.publish(up, b'{"seq":1}') == 0
    wait_until(lambda: witness.payloads(up) == [b'{"seq":1}'], message="reading at the centre")

    assert witness.publish(ALERT, b'{"state":"firing"}', retain=True) == 0
    wait_until(lambda: board.payloads(ALERT) == [b'{"state":"firing"}'], message="alert down")

    ops = pair.probe("central", "ops")  # an acknowledgement made at the centre
    assert not ops.connect().is_failure
    assert ops.publish(ACK, b"chief") == 0
    wait_until(lambda: board.payloads(ACK) == [b"chief"], message="ack down")
    assert board.publish(ACK, b"sergeant") == 0  # and one made at the sub-station goes up
    wait_until(
        lambda: witness.payloads(ACK) == [b"chief", b"sergeant"],
        message="ack up",
    )
    # Neither comes back the other way (no loop), and nothing of the site's own goes up.
    sub_alert = board.publish(wire.alert_topic("fleet", SITE, "dt-2", "offline"), b"x")
    assert sub_alert == 0x87  # the ack user may not write alerts at the sub-station either
    probe_end = pair.probe("sub", "dock-d")
    assert not probe_end.connect().is_failure
    assert probe_end.publish(up, b'{"seq":2}') == 0
    wait_until(lambda: len(witness.payloads(up)) == 2, message="second reading")
    assert witness.payloads(ACK) == [b"chief", b"sergeant"]
    assert board.payloads(ACK) == [b"chief", b"sergeant"]  # its own once: not looped back

    # The sub-station's broker stops: the centre publishes the bridge's will.
    pair.sub.stop()
    wait_until(lambda: witness.payloads(LINK)[-1:] == [b"0"], timeout=90, message="link 0")
    pair.sub.start()
    wait_until(lambda: witness.payloads(LINK)[-1:] == [b"1"], timeout=60, message="link 1 again")
    for p in (witness, board, agent, ops, probe_end):
        p.close()


def test_a_substation_without_its_centre_or_password_is_refused(tmp_path: Path, capsys: Any):
    config = fleet_toml(tmp_path, registry=REGISTRY, extra="[broker.bridge]\ntls = true\n")
    code, _, err = broker_config(config, tmp_path / "out", capsys, "--role", "substation")
    assert code == 78
    for key in ("broker.bridge.address", "broker.bridge.password_file", "broker.bridge.cafile"):
        assert f": {key}: " in err
    code, _, err = broker_config(config, tmp_path / "out", capsys, "--role", "central")
    assert code == 78
    assert ": broker.bridge_sites: " in err


def test_the_password_is_written_to_the_conf_only(pair: Pair, capsys: Any):
    password = credential(pair.central_out, f"bridge-{SITE}")
    conf = (pair.sub_out / "mosquitto.conf").read_text()
    assert f"remote_password {password}\n" in conf
    code, stdout, err = broker_config(pair.sub_config, pair.sub_out, capsys, "--role", "substation")
    assert code == 0
    assert password not in stdout + err
