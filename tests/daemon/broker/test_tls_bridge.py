"""The sub-station's bridge over TLS, for real: the central broker with the generated TLS
listener, the sub-station broker with the generated TLS bridge (`bridge_cafile`,
`bridge_tls_version`, `bridge_insecure false`), certificates from tests/harness/certs.py.

A reading goes up and an alert comes down through the TLS link; a bridge given another CA
never connects, and the sub-station's Mosquitto says why in its log. The central broker has
no plain listener at all: whatever reaches it came over TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.daemon import wire
from tests.daemon.broker.helpers import (
    GeneratedMosquitto,
    Probe,
    broker_config,
    credential,
    fleet_toml,
)
from tests.harness.certs import make_pki
from tests.harness.process import free_port
from tests.harness.waiting import wait_until

SITE = "downtown"
REGISTRY = f"""
[[devices]]
id = "dt-1"
kind = "segway"
site = "{SITE}"

[[agents]]
id = "dock-d"
site = "{SITE}"
devices = ["dt-1"]
"""
LINK = wire.link_topic("fleet", SITE, f"bridge-{SITE}")
UP = wire.telemetry_topic("fleet", SITE, "segway", "dt-1")
ALERT = wire.alert_topic("fleet", SITE, "dt-1", "offline")
VERIFY_FAILED = "certificate verify failed"  # Mosquitto 2.0.11's words, from OpenSSL


@dataclass
class Central:
    broker: GeneratedMosquitto
    out: Path
    ca: Path

    def probe(self, user: str) -> Probe:
        return Probe(self.broker.port, user, credential(self.out, user), ca=self.ca)


def start_central(tmp_path: Path, capsys: Any) -> Central:
    """The central broker, TLS only, with the bridge user of SITE."""
    folder = tmp_path / "central"
    (folder / "pki").mkdir(parents=True)
    ca, cert, key = make_pki(folder / "pki")
    port = free_port()
    config = fleet_toml(
        folder,
        port=port,
        registry=REGISTRY,
        broker=f'tls = true\ncafile = "{ca}"\ncertfile = "{cert}"\nkeyfile = "{key}"\n'
        f'bridge_sites = ["{SITE}"]',
    )
    out = folder / "broker"
    code, _, err = broker_config(config, out, capsys, "--role", "central")
    assert code == 0, err
    listeners = [line for line in (out / "mosquitto.conf").read_text().splitlines()]
    assert [line for line in listeners if line.startswith("listener ")] == [
        f"listener {port} 127.0.0.1"
    ]
    assert f"certfile {cert}" in listeners  # the one listener is a TLS one
    broker = GeneratedMosquitto(out / "mosquitto.conf", port, folder / "mosquitto")
    broker.start()
    return Central(broker, out, ca)


def start_substation(
    tmp_path: Path, capsys: Any, central: Central, ca: Path, address: str = "localhost"
) -> tuple[GeneratedMosquitto, Path]:
    """The sub-station's broker, bridged up to `central` over TLS, trusting `ca`."""
    folder = tmp_path / "sub"
    folder.mkdir()
    port = free_port()
    password = central.out / "credentials" / f"bridge-{SITE}"
    config = fleet_toml(
        folder,
        port=port,
        registry=REGISTRY,
        extra=f"""
[broker.bridge]
address = "{address}"
port = {central.broker.port}
tls = true
cafile = "{ca}"
password_file = "{password}"
""",
    )
    config.write_text(config.read_text().replace('id = "allingtown"', f'id = "{SITE}"', 1))
    out = folder / "broker"
    code, _, err = broker_config(config, out, capsys, "--role", "substation")
    assert code == 0, err
    conf = (out / "mosquitto.conf").read_text().splitlines()
    for line in (f"bridge_cafile {ca}", "bridge_tls_version tlsv1.2", "bridge_insecure false"):
        assert line in conf
    broker = GeneratedMosquitto(out / "mosquitto.conf", port, folder / "mosquitto")
    broker.start()
    return broker, out


def test_a_reading_goes_up_and_an_alert_comes_down_over_tls(tmp_path: Path, capsys: Any) -> None:
    central = start_central(tmp_path, capsys)
    sub, sub_out = start_substation(tmp_path, capsys, central, central.ca)
    probes: list[Probe] = []
    try:
        witness = central.probe("fleet-collector")  # over TLS too: the only listener
        probes.append(witness)
        assert not witness.connect().is_failure
        witness.subscribe(f"fleet/v1/{SITE}/#")
        wait_until(lambda: witness.payloads(LINK)[-1:] == [b"1"], timeout=60, message="link 1")
        assert "New bridge connected from 127.0.0.1" in central.broker.log_text()

        board = Probe(sub.port, "ops", credential(sub_out, "ops"))
        agent = Probe(sub.port, "dock-d", credential(sub_out, "dock-d"))
        probes += [board, agent]
        for probe in (board, agent):
            assert not probe.connect().is_failure
        board.subscribe(f"fleet/v1/{SITE}/alerts/#")
        assert agent.publish(UP, b'{"seq":1}') == 0
        wait_until(lambda: witness.payloads(UP) == [b'{"seq":1}'], message="reading up over TLS")

        assert witness.publish(ALERT, b'{"state":"firing"}', retain=True) == 0
        wait_until(
            lambda: board.payloads(ALERT) == [b'{"state":"firing"}'], message="alert down over TLS"
        )
        assert VERIFY_FAILED not in sub.log_text()
    finally:
        for probe in probes:
            probe.close()
        sub.stop()
        central.broker.stop()


def test_a_bridge_trusting_another_ca_does_not_connect_and_says_why(
    tmp_path: Path, capsys: Any
) -> None:
    central = start_central(tmp_path, capsys)
    (tmp_path / "other-pki").mkdir()
    other_ca, _, _ = make_pki(tmp_path / "other-pki")  # a CA that did not sign the centre
    sub, _ = start_substation(tmp_path, capsys, central, other_ca)
    try:
        # Logged when the handshake fails; the centre never saw the bridge log in.
        wait_until(
            lambda: VERIFY_FAILED in sub.log_text(), timeout=60, message="the refusal in the log"
        )
        assert "bridge-downtown" in sub.log_text()
        witness = central.probe("fleet-collector")
        try:
            assert not witness.connect().is_failure
            witness.subscribe(LINK)  # retained at the centre: "1" had the bridge ever connected
            # A sentinel after the subscription: retained messages come before it.
            witness.subscribe(ALERT)
            assert witness.publish(ALERT, b"sentinel") == 0
            wait_until(lambda: witness.payloads(ALERT) == [b"sentinel"], message="sentinel")
            assert witness.payloads(LINK) == []
        finally:
            witness.close()
        assert "New bridge connected" not in central.broker.log_text()
    finally:
        sub.stop()
        central.broker.stop()
