"""The MQTT link (daemon/mqtt.py: the collector's, the agent's, replay's) over TLS refuses a
broker whose certificate names another host, although a CA it trusts signed it: it never
connects, says why in the log (without the password), and `mqtt.tls.insecure` is the only
setting that lets it through - and only past the name check, never past an unknown CA.

A real Mosquitto with two TLS listeners from one test CA: one whose certificate names
broker.elsewhere.example only, one for localhost / 127.0.0.1 (the control: the same settings
connect there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.config.mqtt import MqttSettings
from fleet.daemon.mqtt import MqttLink
from tests.harness.certs import TestCA
from tests.harness.process import free_port
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

OTHER_HOST = "broker.elsewhere.example"
PASSWORD = "tls-hostname-test-password-7f3a"
CONNECT_S = 20.0  # generous: the machine is shared; a good connect takes milliseconds


@dataclass(frozen=True)
class Broker:
    ca: Path  # signed both listeners' certificates
    stranger_ca: Path  # signed neither
    other_name_port: int  # certificate for OTHER_HOST only
    local_name_port: int  # certificate for localhost / 127.0.0.1


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("tls-hostname")
    ca = TestCA.create(folder)
    other_cert, other_key = ca.issue(folder, [OTHER_HOST], stem="other-name")
    local_cert, local_key = ca.issue(folder, stem="local-name")
    stranger = TestCA.create(folder, stem="stranger-ca")
    ports = free_port(), free_port()
    listeners = [
        f"listener {port} 127.0.0.1\ncafile {ca.path}\ncertfile {cert}\nkeyfile {key}\n"
        for port, cert, key in zip(
            ports, (other_cert, local_cert), (other_key, local_key), strict=True
        )
    ]
    server = MosquittoServer(folder / "mosquitto", extra_config="".join(listeners))
    server.start()
    try:
        yield Broker(ca.path, stranger.path, *ports)
    finally:
        server.stop()


def settings(tmp_path: Path, host: str, port: int, ca: Path, *, insecure: bool) -> MqttSettings:
    """The [mqtt] section as a collector or agent writes it, loaded as they load it."""
    secret = tmp_path / "mqtt.password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    config = tmp_path / "fleet.toml"
    config.write_text(
        f"""
[mqtt]
host = "{host}"
port = {port}
username = "fleet-collector"
client_id = "tls-hostname-{port}"
password_file = "{secret}"

[mqtt.tls]
enabled = true
ca_file = "{ca}"
insecure = {"true" if insecure else "false"}
""",
        encoding="utf-8",
    )
    return load_settings(config, environ={}).mqtt


def connects(mqtt: MqttSettings) -> bool:
    link = MqttLink(mqtt, persistent=False)
    link.start()
    try:
        return link.wait_connected(CONNECT_S)
    finally:
        link.stop()


def daemon_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fleet.daemon.mqtt" and r.levelno >= logging.WARNING
    ]


def attempts(caplog: pytest.LogCaptureFixture) -> int:
    """Connection attempts that failed so far (paho's own DEBUG line for each)."""
    return sum(r.name == "paho" and "Connection failed" in r.getMessage() for r in caplog.records)


def refusal(mqtt: MqttSettings, caplog: pytest.LogCaptureFixture, *, tries: int = 1) -> str:
    """Start a link that must not connect; the daemon's log line that says why - one line,
    however often the link tries (`tries` attempts are waited for; paho retries after 1 s)."""
    link = MqttLink(mqtt, persistent=False)
    link.start()
    try:
        wait_until(
            lambda: attempts(caplog) >= tries and daemon_warnings(caplog),
            timeout=CONNECT_S,
            message=f"{tries} failed attempt(s) and a log line saying why",
        )
        assert not link.connected
    finally:
        link.stop()
    lines = daemon_warnings(caplog)
    assert len(lines) == 1, lines
    return lines[0]


# paho (2.2) does not close the socket of a TLS handshake that failed verification; the
# ResourceWarning it leaves is paho's, not the link's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("host", "mismatch"),
    [("localhost", "Hostname mismatch"), ("127.0.0.1", "IP address mismatch")],
)
def test_a_certificate_for_another_host_is_refused_and_said_why(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture, host: str, mismatch: str
) -> None:
    caplog.set_level(logging.DEBUG)  # everything anyone logs, paho's DEBUG lines included
    caplog.set_level(logging.DEBUG, logger="paho")  # another test may have configured it
    mqtt = settings(tmp_path, host, broker.other_name_port, broker.ca, insecure=False)
    line = refusal(mqtt, caplog, tries=2 if host == "localhost" else 1)  # once: not per retry
    assert f"{host}:{broker.other_name_port}" in line
    assert f"{mismatch}, certificate is not valid for '{host}'" in line
    assert "mqtt.tls.insecure" in line  # the way out is named, with its danger
    levels = [r.levelno for r in caplog.records if r.name == "fleet.daemon.mqtt"]
    assert levels == [logging.ERROR]  # a configuration to fix, not an outage to wait out
    assert PASSWORD not in caplog.text


def test_the_same_settings_connect_where_the_certificate_names_the_host(
    tmp_path: Path, broker: Broker
) -> None:
    """The control: the CA and the rest are right, so only the name can be refused above."""
    assert connects(
        settings(tmp_path, "localhost", broker.local_name_port, broker.ca, insecure=False)
    )


def test_tls_insecure_lets_another_hosts_certificate_through(
    tmp_path: Path, broker: Broker
) -> None:
    mqtt = settings(tmp_path, "localhost", broker.other_name_port, broker.ca, insecure=True)
    assert connects(mqtt)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_insecure_does_not_let_an_unknown_ca_through(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="paho")  # another test may have configured it
    mqtt = settings(
        tmp_path, "localhost", broker.other_name_port, broker.stranger_ca, insecure=True
    )
    line = refusal(mqtt, caplog)
    # The stranger CA bears the test CA's very name: OpenSSL takes it for the issuer and the
    # signature fails ("certificate signature failure"); not a name check, which is skipped.
    assert "the broker's certificate is refused: certificate signature failure" in line
    assert "mismatch" not in line
    assert "mqtt.tls.ca_file" in line
    assert PASSWORD not in caplog.text


def test_a_broker_that_is_away_is_a_warning_not_an_error(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The same log line for any failed attempt: nothing listens on the port here."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="paho")  # another test may have configured it
    line = refusal(settings(tmp_path, "localhost", free_port(), broker.ca, insecure=False), caplog)
    assert "Connection refused" in line
    assert [r.levelno for r in caplog.records if r.name == "fleet.daemon.mqtt"] == [logging.WARNING]
