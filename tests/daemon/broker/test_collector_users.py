"""Several collectors on one generated broker (`[[broker.collectors]]`): a broker user each.

The broker names every session by its user name (use_username_as_clientid): two collectors
sharing one user would take each other's persistent session. Declared, each gets its own
user, password and ACL over its own sites; nothing declared stays one collector user for
every site. Shown on the real Mosquitto: each reads only its site, neither writes the
other's alerts, and each keeps its own persistent session across a reconnect.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fleet.config import load_settings
from fleet.daemon import wire
from fleet.daemon.broker.collectors import collector_warning
from fleet.daemon.broker.users import BrokerUser, Role, derive_users
from tests.daemon.broker.helpers import (
    DECLARED_COLLECTORS,
    NOT_AUTHORIZED,
    GeneratedMosquitto,
    Probe,
    broker_config,
    credential,
    fleet_toml,
)
from tests.harness.process import free_port
from tests.harness.waiting import wait_until

A, W = "allingtown", "westhaven"  # dock-a's sw-01 and dock-w's sw-02 (helpers.REGISTRY)
DECLARED = DECLARED_COLLECTORS  # collector-a owns A, collector-w owns W
READING = {A: wire.telemetry_topic("fleet", A, "segway", "sw-01")}
READING[W] = wire.telemetry_topic("fleet", W, "segway", "sw-02")
AGENT = {A: "dock-a", W: "dock-w"}
COLLECTOR = {A: "collector-a", W: "collector-w"}
OTHER = {A: W, W: A}


def alert(site: str) -> str:
    return wire.alert_topic("fleet", site, "sw-01" if site == A else "sw-02", "offline")


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: '+' one level, '#' the rest."""
    levels, wanted = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(wanted) or level not in ("+", wanted[index]):
            return False
    return len(levels) == len(wanted)


def who(users: tuple[BrokerUser, ...], topic: str, access: str) -> set[str]:
    return {
        u.name for u in users for r in u.rights if access in r.access and matches(r.topic, topic)
    }


# --- derived (no broker) -----------------------------------------------------------------------


def test_each_declared_collector_gets_a_user_and_the_rights_of_its_sites(tmp_path: Path) -> None:
    settings = load_settings(fleet_toml(tmp_path, extra=DECLARED), environ={})
    plan = derive_users(settings)
    assert plan.problems == ()
    assert [(u.name, u.role) for u in plan.users][:4] == [
        ("collector-a", Role.COLLECTOR),
        ("collector-a-replay", Role.REPLAY),
        ("collector-w", Role.COLLECTOR),
        ("collector-w-replay", Role.REPLAY),
    ]
    assert "fleet-collector" not in {u.name for u in plan.users}  # no user for every site
    users = plan.users
    for site in (A, W):
        mine, replay = COLLECTOR[site], f"{COLLECTOR[site]}-replay"
        assert who(users, READING[site], "read") == {mine}
        assert who(users, READING[site], "write") == {AGENT[site], replay}
        assert who(users, alert(site), "write") == {mine}
        assert who(users, wire.deadletter_topic("fleet", site), "write") == {mine}
        assert who(users, alert(site) + "/ack", "read") == {mine, "ops"}  # ops: any site
        link = wire.link_topic("fleet", site, f"bridge-{site}")
        assert who(users, link, "read") == {mine}
    # OwnTracks topics carry no site: each collector reads them and keeps its own phones.
    assert who(users, "owntracks/alice/phone", "read") == {"collector-a", "collector-w", "alice"}


def test_nothing_declared_stays_one_collector_for_every_site(tmp_path: Path) -> None:
    plan = derive_users(load_settings(fleet_toml(tmp_path), environ={}))
    collectors = [u for u in plan.users if u.role is Role.COLLECTOR]
    assert [u.name for u in collectors] == ["fleet-collector"]
    for site in (A, W, "anywhere"):
        assert who(plan.users, alert(site), "write") == {"fleet-collector"}


def test_two_collectors_owning_one_site_is_a_config_error(tmp_path: Path, capsys: Any) -> None:
    overlap = (
        DECLARED
        + '\n[[broker.collectors]]\nuser = "collector-a"\nsites = ["x", "x", "westhaven"]\n'
    )
    config = fleet_toml(tmp_path, extra=overlap)
    code, _, err = broker_config(config, tmp_path / "out", capsys)
    assert code == 78
    assert err.splitlines() == [
        f"{config}: broker.collectors[2].user: also the user of broker.collectors[0]: each "
        "collector needs a broker user of its own (sessions are named by it)",
        f"{config}: broker.collectors[2].sites: site x is listed twice",
        f"{config}: broker.collectors[2].sites: site {W} is also owned by "
        "broker.collectors[1] ('collector-w'): a site belongs to one collector",
    ]
    assert not (tmp_path / "out").exists()


def test_a_site_no_declared_collector_owns_is_noted(tmp_path: Path, capsys: Any) -> None:
    only_a = DECLARED.split("[[broker.collectors]]")[1]
    config = fleet_toml(tmp_path, extra="[[broker.collectors]]" + only_a)
    code, _, err = broker_config(config, tmp_path / "out", capsys)
    assert code == 0, err
    assert f"note: no [[broker.collectors]] entry owns site {W}: no collector may read" in err


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({}, None),
        ({"FLEET_MQTT__USERNAME": "fleet-collector"}, "mqtt.username"),
        ({"FLEET_COLLECTOR__SITES": f'["{A}", "{W}"]'}, "collector.sites"),
        ({"FLEET_COLLECTOR__SITES": "[]"}, "collector.sites"),
        ({"FLEET_MQTT__CLIENT_ID": "collector-a-1"}, "mqtt.client_id"),
    ],
    ids=["matches", "undeclared-user", "more-sites", "every-site", "client-id"],
)
def test_check_config_warns_when_this_collector_is_not_its_declared_entry(
    tmp_path: Path, env: dict[str, str], key: str | None
) -> None:
    mqtt = 'client_id = "collector-a"'
    extra = DECLARED + f'\n[collector]\nsites = ["{A}"]\n'
    config = fleet_toml(tmp_path, username="collector-a", mqtt=mqtt, extra=extra)
    warning = collector_warning(load_settings(config, environ=env))
    if key is None:
        assert warning is None
    else:
        assert warning is not None
        assert warning.startswith(f"{key}: ")


# --- on the real broker ------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path, capsys: Any) -> Iterator[tuple[GeneratedMosquitto, Path]]:
    port = free_port()
    config = fleet_toml(tmp_path, port=port, extra=DECLARED)
    out = tmp_path / "broker"
    code, stdout, err = broker_config(config, out, capsys)
    assert code == 0, err
    assert "collector-a-replay" in stdout
    mosquitto = GeneratedMosquitto(out / "mosquitto.conf", port, tmp_path / "mosquitto")
    mosquitto.start()
    try:
        yield mosquitto, out
    finally:
        mosquitto.stop()


def probe(broker: tuple[GeneratedMosquitto, Path], user: str, **kwargs: Any) -> Probe:
    mosquitto, out = broker
    client = Probe(mosquitto.port, user, credential(out, user), **kwargs)
    assert not client.connect().is_failure, user
    return client


def has(client: Probe, topic: str, payloads: list[bytes]) -> bool:
    return client.payloads(topic) == payloads


def sentinel_seen(client: Probe, site: str) -> bool:
    return has(client, alert(site) + "/ack", [b"sentinel"])


def test_each_collector_reads_only_its_site_and_writes_only_its_alerts(
    broker: tuple[GeneratedMosquitto, Path],
) -> None:
    collectors = {site: probe(broker, COLLECTOR[site]) for site in (A, W)}
    agents = {site: probe(broker, AGENT[site]) for site in (A, W)}
    ops = probe(broker, "ops")  # may acknowledge any site's alerts: the sentinels
    try:
        for client in collectors.values():
            client.subscribe("fleet/v1/#")  # asks for everything; the ACL decides
        for site in (A, W):
            assert agents[site].publish(READING[site], site.encode()) == 0
        for site in (A, W):
            # Mosquitto queues a message for its subscribers before it answers the PUBACK:
            # an ack published afterwards reaches each collector after any reading it may read.
            assert ops.publish(alert(site) + "/ack", b"sentinel") == 0
        for site in (A, W):
            mine = collectors[site]
            wait_until(partial(sentinel_seen, mine, site), message=f"{COLLECTOR[site]}'s sentinel")
            assert mine.payloads(READING[site]) == [site.encode()]
            assert mine.payloads(READING[OTHER[site]]) == []
            assert mine.payloads(alert(OTHER[site]) + "/ack") == []
            # Its own site's alerts and dead letters, never the other's.
            assert mine.publish(alert(site), b"{}", retain=True) in (0x00, 0x10)
            assert mine.publish(alert(OTHER[site]), b"{}", retain=True) == NOT_AUTHORIZED
            other_dl = wire.deadletter_topic("fleet", OTHER[site])
            assert mine.publish(other_dl, b"{}") == NOT_AUTHORIZED
            assert mine.publish(READING[site], b"forged") == NOT_AUTHORIZED  # reads only
    finally:
        for client in [*collectors.values(), *agents.values(), ops]:
            client.close()


def test_each_collector_keeps_its_own_persistent_session(
    broker: tuple[GeneratedMosquitto, Path],
) -> None:
    for site in (A, W):  # each makes its session and goes away
        first = probe(broker, COLLECTOR[site], client_id=COLLECTOR[site], persistent=True)
        first.subscribe(f"fleet/v1/{site}/+/+/telemetry")
        first.close()
    agents = {site: probe(broker, AGENT[site]) for site in (A, W)}
    for site in (A, W):
        for seq in (1, 2):  # queued in the session of the collector that is away
            assert agents[site].publish(READING[site], f"{site}-{seq}".encode()) == 0
    back = {
        site: probe(broker, COLLECTOR[site], client_id=COLLECTOR[site], persistent=True)
        for site in (A, W)
    }
    try:
        for site in (A, W):
            client = back[site]
            assert client.session_present is True
            expected = [f"{site}-1".encode(), f"{site}-2".encode()]
            wait_until(
                partial(has, client, READING[site], expected),
                message=f"{COLLECTOR[site]}'s queued readings",
            )
            assert client.topics() == [READING[site]] * 2  # nothing of the other's
    finally:
        for client in [*back.values(), *agents.values()]:
            client.close()
