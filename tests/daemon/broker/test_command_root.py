"""`fleet broker-config --root DIR` (an image being built) opens no file of the machine it
runs on: not the fleet's other secrets (`*_file` keys, systemd credentials), not the
collector's TLS files. Each path the configuration names exists twice here, with different
content: on "the host" (absolute, as named) and inside the root. A Python audit hook in the
command's own process records every file it opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.broker.helpers import REGISTRY, RUN_AS

# Records every path opened (the `open` audit event covers open(), os.open and mkstemp),
# then runs the command as `fleet` would.
_RUNNER = """
import os, sys
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(hook)
from fleet.daemon import cli
code = cli.main(sys.argv[2:])
seen = list(opened)  # before the log's own open
with open(sys.argv[1], "w", encoding="utf-8") as log:
    log.write("\\n".join(seen))
sys.exit(code)
"""

# file key -> (where the configuration names it, relative to the machine's /)
NAMED = {
    "influx.token_file": "etc/fleet/secrets/influx.token",
    "mqtt.password_file": "etc/fleet/secrets/mqtt.password",
    "alerts.notify.warning_file": "etc/fleet/secrets/warning.urls",
    "agent.drivers[0].bind_key_file": "etc/fleet/secrets/hh-09.bindkey",
    "mqtt.tls.ca_file": "etc/fleet/tls/ca.pem",
    "http.tls_cert": "etc/fleet/tls/board.pem",
    "http.tls_key": "etc/fleet/tls/board.key",
    "broker.bridge.password_file": "etc/fleet/broker-bridge.password",
}
# 32 hex digits: a valid BTHome bind key too, so that only the opening can fail.
HOST_SECRET = "0123456789abcdef" * 2
IMAGE_SECRET = "fedcba9876543210" * 2
BRIDGE_PASSWORD = "the-image-bridge-password"


def _config(machine: Path) -> str:
    """The configuration, naming each file as `machine/<relative path>` (absolute)."""

    def at(key: str) -> str:
        return str(machine / NAMED[key])

    return f"""
[site]
id = "allingtown"

[mqtt]
username = "fleet-collector"
client_id = "fleet-collector"
password_file = "{at("mqtt.password_file")}"

[mqtt.tls]
enabled = true
ca_file = "{at("mqtt.tls.ca_file")}"

[influx]
api = "v2"
org = "police"
token_file = "{at("influx.token_file")}"

[http]
tls_cert = "{at("http.tls_cert")}"
tls_key = "{at("http.tls_key")}"

[alerts.notify]
warning_file = "{at("alerts.notify.warning_file")}"

[agent]
id = "dock-a"

[[agent.drivers]]
kind = "bthome"
device = "hh-09"
address = "AA:BB:CC:DD:EE:09"
bind_key_file = "{at("agent.drivers[0].bind_key_file")}"

{REGISTRY}

[broker]
persistence_location = "/var/lib/mosquitto/"

[broker.bridge]
address = "central.example"
tls = false
password_file = "{at("broker.bridge.password_file")}"
"""


def _lay_files(machine: Path, secret: str) -> None:
    for key, relative in NAMED.items():
        path = machine / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = BRIDGE_PASSWORD if key == "broker.bridge.password_file" else secret
        path.write_text(text + "\n", encoding="utf-8")


def _run(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[int, str, list[str]]:
    log = tmp_path / "opened.txt"
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(log), "broker-config", "--run-as", RUN_AS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    opened = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, opened


@pytest.mark.parametrize("host_has_files", [True, False], ids=["host-other-content", "host-none"])
def test_root_opens_only_the_image(tmp_path: Path, host_has_files: bool) -> None:
    # The machine's view of its / is tmp_path/machine: the configuration names files there.
    machine = tmp_path / "machine"
    root = tmp_path / "image"
    config = machine / "etc/fleet/fleet.toml"
    (root / config.relative_to("/")).parent.mkdir(parents=True)
    (root / config.relative_to("/")).write_text(_config(machine), encoding="utf-8")
    _lay_files(root / machine.relative_to("/"), IMAGE_SECRET)
    credentials = tmp_path / "host-credentials"  # the build host's systemd credentials
    if host_has_files:
        _lay_files(machine, HOST_SECRET)
        credentials.mkdir()
        for name in ("influx.token", "mqtt.password", "alerts.notify.warning"):
            (credentials / name).write_text(HOST_SECRET + "\n", encoding="utf-8")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    env.pop("FLEET_CONFIG", None)
    out = machine / "etc/fleet/broker"

    code, output, opened = _run(
        tmp_path,
        *("--config", str(config), "--out", str(out), "--root", str(root)),
        *("--role", "substation"),
        env=env,
    )

    assert code == 0, output
    assert opened, "the audit hook recorded nothing"
    mine = [p for p in opened if Path(p).is_relative_to(tmp_path)]
    outside = [p for p in mine if not Path(p).is_relative_to(root)]
    assert outside == [], "opened outside the image"
    # What it did open there: the configuration, the bridge's password, its own output.
    image = {str(Path(p).relative_to(root)) for p in mine}
    assert str(config.relative_to("/")) in image
    assert str(Path(machine, NAMED["broker.bridge.password_file"]).relative_to("/")) in image
    unneeded = {k: v for k, v in NAMED.items() if k != "broker.bridge.password_file"}
    for key, relative in unneeded.items():
        assert str((machine / relative).relative_to("/")) not in image, f"{key} was opened"
    written = root / out.relative_to("/")
    conf = (written / "mosquitto.conf").read_text(encoding="utf-8")
    assert f"remote_password {BRIDGE_PASSWORD}" in conf  # the image's, as named
    assert "persistence_location /var/lib/mosquitto/" in conf
    everything = output + "".join(
        p.read_text(encoding="utf-8") for p in written.rglob("*") if p.is_file()
    )
    assert HOST_SECRET not in everything
    assert IMAGE_SECRET not in everything
    assert not (machine / "etc/fleet/broker").exists(), "written outside the image"


def test_without_root_the_other_secrets_are_not_needed(tmp_path: Path) -> None:
    """On the machine itself too: a first run, before any of the fleet's other secrets exist
    (the collector's mqtt.password_file is the credential this run writes)."""
    machine = tmp_path / "machine"
    config = machine / "etc/fleet/fleet.toml"
    config.parent.mkdir(parents=True)
    config.write_text(_config(machine), encoding="utf-8")
    bridge = machine / NAMED["broker.bridge.password_file"]
    bridge.write_text(BRIDGE_PASSWORD + "\n", encoding="utf-8")
    env = {
        k: v for k, v in os.environ.items() if k not in ("FLEET_CONFIG", "CREDENTIALS_DIRECTORY")
    }
    out = machine / "etc/fleet/broker"

    code, output, opened = _run(
        tmp_path, "--config", str(config), "--out", str(out), "--role", "substation", env=env
    )

    assert code == 0, output
    assert str(bridge) in opened
    assert sorted(os.listdir(out / "credentials")) == sorted(
        ["fleet-collector", "fleet-collector-replay", "dock-a", "dock-w", "alice", "bob"]
    )
