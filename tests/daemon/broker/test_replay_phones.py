"""A collector's replay user writes only its own sites' phones (OwnTracks topics carry no
site; daemon/broker/phones.py has the rule). On the real Mosquitto with the generated ACL:
each declared collector's replay user may publish its phones' topics and is refused another
site's phone; derived (no broker) for one collector of every site.

The registry: alice has a phone at allingtown (the default site) and a tablet at westhaven,
bob a phone at allingtown, carol a phone at westhaven.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.daemon import cli
from fleet.daemon.broker.users import Role, derive_users
from tests.daemon.broker.helpers import (
    DECLARED_COLLECTORS,
    NOT_AUTHORIZED,
    REGISTRY,
    RUN_AS,
    GeneratedMosquitto,
    Probe,
    credential,
    fleet_toml,
)
from tests.harness.process import free_port

PHONES = (
    REGISTRY
    + """
[[devices]]
id = "hh-03"
kind = "handheld"
site = "westhaven"
owntracks = "carol/phone"

[[devices]]
id = "hh-04"
kind = "handheld"
site = "westhaven"
owntracks = "alice/tablet"
"""
)
DECLARED = DECLARED_COLLECTORS
OK = 0  # MQTT 5 PUBACK "success"; 0x10 "no matching subscribers" is a success too
NO_SUBSCRIBERS = 0x10
# What each replay user publishes, and what the broker must answer.
EXPECTED = {
    "collector-a-replay": {
        "owntracks/alice/phone": OK,  # hh-01, allingtown
        "owntracks/bob/phone": OK,  # hh-02, allingtown
        "owntracks/bob/watch": OK,  # unregistered: filed under the default site, allingtown
        "owntracks/alice/tablet": NOT_AUTHORIZED,  # hh-04, westhaven's
        "owntracks/carol/phone": NOT_AUTHORIZED,  # hh-03, westhaven's
        "owntracks/alice/watch": NOT_AUTHORIZED,  # alice also has a westhaven phone
        "owntracks/mallory/phone": NOT_AUTHORIZED,  # no such OwnTracks user
        "fleet/v1/allingtown/segway/sw-01/telemetry": OK,
        "fleet/v1/westhaven/segway/sw-02/telemetry": NOT_AUTHORIZED,
    },
    "collector-w-replay": {
        "owntracks/alice/tablet": OK,
        "owntracks/carol/phone": OK,
        "owntracks/carol/watch": NOT_AUTHORIZED,  # unregistered: the default site's
        "owntracks/alice/phone": NOT_AUTHORIZED,
        "owntracks/bob/phone": NOT_AUTHORIZED,
        "owntracks/bob/watch": NOT_AUTHORIZED,
        "fleet/v1/westhaven/segway/sw-02/telemetry": OK,
        "fleet/v1/allingtown/segway/sw-01/telemetry": NOT_AUTHORIZED,
    },
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """One generated broker for the module's tests: (port, output folder)."""
    tmp_path = tmp_path_factory.mktemp("replay-phones")
    port = free_port()
    config = fleet_toml(tmp_path, port=port, registry=PHONES, extra=DECLARED)
    out = tmp_path / "broker"
    argv = ["broker-config", "--config", str(config), "--out", str(out), "--run-as", RUN_AS]
    assert cli.main(argv) == 0
    mosquitto = GeneratedMosquitto(out / "mosquitto.conf", port, tmp_path / "mosquitto")
    mosquitto.start()
    try:
        yield port, out
    finally:
        mosquitto.stop()


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_a_replay_user_writes_its_own_sites_phones_only(
    generated: tuple[int, Path], user: str
) -> None:
    port, out = generated
    client = Probe(port, user, credential(out, user))
    try:
        assert not client.connect().is_failure
        answers = {}
        for topic in EXPECTED[user]:
            code = client.publish(topic, b'{"_type":"location"}')
            answers[topic] = OK if code == NO_SUBSCRIBERS else code
    finally:
        client.close()
    assert answers == EXPECTED[user]


def test_the_acl_names_each_phone_and_why(generated: tuple[int, Path]) -> None:
    _, out = generated
    acl = (out / "acl").read_text(encoding="utf-8")
    section = acl.split("user collector-w-replay\n", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("topic ")]
    assert lines == [
        "topic write fleet/v1/westhaven/+/+/telemetry",
        "topic write owntracks/alice/tablet",
        "topic write owntracks/carol/phone",
    ]
    assert "hh-03's phone (site westhaven)" in section
    assert "owntracks/+/+" not in acl.split("user collector-a-replay\n", 1)[1].split("\n\n")[0]


def test_one_collector_of_every_site_replays_its_registered_users_phones(tmp_path: Path) -> None:
    settings = load_settings(fleet_toml(tmp_path, registry=PHONES), environ={})
    plan = derive_users(settings)
    assert plan.problems == ()
    (replay,) = [u for u in plan.users if u.role is Role.REPLAY]
    assert [r.topic for r in replay.rights if r.topic.startswith("owntracks/")] == [
        "owntracks/alice/+",  # every site is its: unregistered phones too
        "owntracks/bob/+",
        "owntracks/carol/+",
    ]
    assert {r.access for r in replay.rights} == {"write"}
