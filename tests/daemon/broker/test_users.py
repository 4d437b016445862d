"""The broker's users and rights as derived from the settings (pure: no broker here).

Rights are judged by what they let through, with MQTT's own topic matching: for a set of
concrete topics, who may write and who may read each one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon.broker.users import DEFAULT_COLLECTOR_USER, BrokerUser, Role, derive_users
from tests.daemon.broker.helpers import REGISTRY, fleet_toml


def settings(tmp_path: Path, **kwargs: Any) -> FleetSettings:
    return load_settings(fleet_toml(tmp_path, **kwargs), environ={})


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching (mosquitto_topic_matches_sub): '+' one level, '#' the rest."""
    levels, wanted = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(wanted) or (level not in ("+", wanted[index])):
            return False
    return len(levels) == len(wanted)


def who(users: tuple[BrokerUser, ...], topic: str, access: str) -> set[str]:
    """The users an ACL of these rights lets `access` ("read" or "write") `topic`."""
    return {
        user.name
        for user in users
        for right in user.rights
        if access in right.access and matches(right.topic, topic)
    }


def test_topic_matching_of_the_test_itself() -> None:
    assert matches("a/+/c", "a/b/c")
    assert not matches("a/+/c", "a/b/d")
    assert matches("a/#", "a/b/c")
    assert matches("a/#", "a")
    assert not matches("a/+", "a/b/c")
    assert not matches("a/b", "a/b/c")


def test_users_roles_and_order(tmp_path: Path) -> None:
    plan = derive_users(settings(tmp_path))
    assert plan.problems == ()
    assert [(u.name, u.role) for u in plan.users] == [
        ("fleet-collector", Role.COLLECTOR),
        ("fleet-collector-replay", Role.REPLAY),
        ("dock-a", Role.AGENT),
        ("dock-w", Role.AGENT),
        ("alice", Role.OWNTRACKS),
        ("bob", Role.OWNTRACKS),
        ("ops", Role.ACK),
    ]
    assert [u.key for u in plan.users] == [
        "mqtt.username",
        "mqtt.username",
        "agents[0].id",
        "agents[1].id",
        "devices[2].owntracks",
        "devices[3].owntracks",
        "broker.ack_users[0]",
    ]


REPLAY = "fleet-collector-replay"
WRITERS = {
    # The agents write exactly their own devices' topics, kind and site from the registry;
    # the replay user any telemetry (kept originals go back to their own topics).
    "fleet/v1/allingtown/segway/sw-01/telemetry": {"dock-a", REPLAY},
    "fleet/v1/allingtown/segway/sw-01/availability": {"dock-a"},
    "fleet/v1/allingtown/agent/dock-a/availability": {"dock-a"},
    "fleet/v1/westhaven/segway/sw-02/telemetry": {"dock-w", REPLAY},
    "fleet/v1/westhaven/agent/dock-w/availability": {"dock-w"},
    # ...and nothing else: not their device under another site or kind, not a stranger.
    "fleet/v1/westhaven/segway/sw-01/telemetry": {REPLAY},
    "fleet/v1/allingtown/handheld/sw-01/telemetry": {REPLAY},
    "fleet/v1/allingtown/segway/sw-99/telemetry": {REPLAY},
    "fleet/v1/allingtown/agent/dock-w/availability": set(),
    "fleet/v1/allingtown/agent/mallory/availability": set(),
    # Alerts and dead letters: the collector alone; acknowledgements: it and the ack user.
    "fleet/v1/allingtown/alerts/sw-01/battery_low": {"fleet-collector"},
    "fleet/v1/allingtown/alerts/sw-01/battery_low/ack": {"fleet-collector", "ops"},
    "fleet/v1/westhaven/alerts/sw-02/offline/ack": {"fleet-collector", "ops"},
    "fleet/v1/allingtown/deadletter": {"fleet-collector"},
    # OwnTracks: each user its own tree; the replay user replays only the registry's users'
    # phones (one collector of every site: an unregistered phone of theirs too), no stranger.
    "owntracks/alice/phone": {"alice", REPLAY},
    "owntracks/alice/phone/event": {"alice"},
    "owntracks/alice/watch": {"alice", REPLAY},
    "owntracks/bob/phone": {"bob", REPLAY},
    "owntracks/mallory/phone": set(),
    # Nobody writes anything else under the prefix.
    "fleet/v1/allingtown/other": set(),
    "fleet/v2/allingtown/segway/sw-01/telemetry": set(),
    "$SYS/broker/uptime": set(),
}


@pytest.mark.parametrize(("topic", "writers"), WRITERS.items())
def test_who_may_write(tmp_path: Path, topic: str, writers: set[str]) -> None:
    assert who(derive_users(settings(tmp_path)).users, topic, "write") == writers


READERS = {
    "fleet/v1/allingtown/segway/sw-01/telemetry": {"fleet-collector"},
    "fleet/v1/allingtown/segway/sw-01/availability": {"fleet-collector"},
    "fleet/v1/allingtown/agent/dock-a/availability": {"fleet-collector"},
    "fleet/v1/allingtown/alerts/sw-01/battery_low": {"fleet-collector", "ops"},
    "fleet/v1/allingtown/alerts/sw-01/battery_low/ack": {"fleet-collector", "ops"},
    # An officer's phone reads its own tree (the app's commands) and no one else's position.
    "owntracks/alice/phone": {"alice", "fleet-collector"},
    "owntracks/alice/phone/cmd": {"alice"},
    "owntracks/bob/phone": {"bob", "fleet-collector"},
}


@pytest.mark.parametrize(("topic", "readers"), READERS.items())
def test_who_may_read(tmp_path: Path, topic: str, readers: set[str]) -> None:
    assert who(derive_users(settings(tmp_path)).users, topic, "read") == readers


def test_the_collector_reads_what_it_subscribes_to(tmp_path: Path) -> None:
    from fleet.daemon import wire

    plan = derive_users(settings(tmp_path))
    collector = plan.users[0]
    filters = {r.topic for r in collector.rights if "read" in r.access}
    for wanted in [*wire.subscriptions("fleet"), *wire.control_subscriptions("fleet")]:
        assert any(matches(f, wanted) for f in filters), wanted


def test_the_topic_prefix_is_the_configured_one(tmp_path: Path) -> None:
    plan = derive_users(settings(tmp_path, mqtt='topic_prefix = "pd"'))
    topics = [r.topic for u in plan.users for r in u.rights if not r.topic.startswith("owntracks")]
    assert len(topics) == 14  # 5 the collector, 1 its replay user, 3 each agent, 2 the ack user
    assert all(t.startswith("pd/v1/") for t in topics), topics


def test_unset_mqtt_username_means_fleet_collector_and_says_so(tmp_path: Path) -> None:
    plan = derive_users(settings(tmp_path, username=None))
    assert plan.users[0].name == DEFAULT_COLLECTOR_USER == "fleet-collector"
    assert any("mqtt.username is unset" in note for note in plan.notes)
    assert not any("mqtt.username" in n for n in derive_users(settings(tmp_path)).notes)


def test_one_officer_with_two_phones_is_one_user(tmp_path: Path) -> None:
    registry = REGISTRY.replace('"bob/phone"', '"alice/tablet"')
    plan = derive_users(settings(tmp_path, registry=registry))
    assert [u.name for u in plan.users if u.role is Role.OWNTRACKS] == ["alice"]


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        # An OwnTracks user named like an agent would get its rights on top.
        (('"bob/phone"', '"dock-a/phone"'), "devices[3].owntracks", "agents[0].id (agent)"),
        (('"bob/phone"', '"fleet-collector/x"'), "devices[3].owntracks", "mqtt.username"),
        (('ack_users = ["ops"]', 'ack_users = ["alice"]'), "broker.ack_users[0]", "owntracks"),
        (('ack_users = ["ops"]', 'ack_users = ["ops", "ops"]'), "broker.ack_users[1]", "duplicate"),
        (('id = "dock-w"', 'id = "fleet-collector"'), "agents[1].id", "mqtt.username"),
    ],
)
def test_one_name_two_roles_is_refused(
    tmp_path: Path, change: tuple[str, str], key: str, words: str
) -> None:
    toml = fleet_toml(tmp_path)
    toml.write_text(toml.read_text().replace(*change))
    plan = derive_users(load_settings(toml, environ={}))
    assert [k for k, _ in plan.problems] == [key]
    assert words in plan.problems[0][1]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('"bob/phone"', '"bob smith/phone"'), "devices[3].owntracks"),  # a space
        (('"bob/phone"', '"bob:x/phone"'), "devices[3].owntracks"),  # ':' ends the name
        (('"bob/phone"', '"-bob/phone"'), "devices[3].owntracks"),
        (('username = "fleet-collector"', 'username = "the collector"'), "mqtt.username"),
        (('username = "fleet-collector"', 'username = "c%u"'), "mqtt.username"),
    ],
)
def test_a_name_the_files_cannot_hold_is_refused_without_echoing_it(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    toml = fleet_toml(tmp_path)
    toml.write_text(toml.read_text().replace(*change))
    plan = derive_users(load_settings(toml, environ={}))
    assert [k for k, _ in plan.problems] == [key]
    message = plan.problems[0][1]
    assert "broker user names are 1-64 letters" in message
    assert change[1].strip('"').split("/")[0] not in message


def test_notes_on_devices_nobody_may_report_and_passwords_in_clear(tmp_path: Path) -> None:
    registry = REGISTRY + '\n[[devices]]\nid = "sw-07"\nkind = "segway"\n'
    plan = derive_users(settings(tmp_path, registry=registry, bind="0.0.0.0"))
    assert any("telemetry of sw-07" in n for n in plan.notes)
    assert any("passwords cross the network in clear" in n for n in plan.notes)
    quiet = derive_users(settings(tmp_path))
    assert not [n for n in quiet.notes if "sw-07" in n or "in clear" in n]


# --- sessions are named by user names (use_username_as_clientid) ----------------------------


def test_a_collector_client_id_other_than_its_user_is_refused(tmp_path: Path) -> None:
    plan = derive_users(settings(tmp_path, mqtt='client_id = "fleet-collector-allingtown"'))
    assert [key for key, _ in plan.problems] == ["mqtt.client_id"]
    message = plan.problems[0][1]
    assert message.startswith("differs from the collector's broker user 'fleet-collector'")
    assert 'set mqtt.client_id = "fleet-collector"' in message
    assert "session bookkeeping in the spool" in message
    assert "allingtown" not in message  # the client id itself is not echoed
    # Unset mqtt.username: the default user and the default client id agree.
    assert derive_users(settings(tmp_path, username=None)).problems == ()


def test_the_replay_user_is_named_after_the_collector_and_has_its_own_name(
    tmp_path: Path,
) -> None:
    plan = derive_users(settings(tmp_path, username="col", mqtt='client_id = "col"'))
    assert [(u.name, u.role) for u in plan.users[:2]] == [
        ("col", Role.COLLECTOR),
        ("col-replay", Role.REPLAY),
    ]
    taken = derive_users(
        settings(tmp_path, registry=REGISTRY.replace('"dock-w"', '"fleet-collector-replay"'))
    )
    assert [k for k, _ in taken.problems] == ["agents[1].id"]
    assert "already the broker user of mqtt.username (replay)" in taken.problems[0][1]


def test_a_collector_name_too_long_for_its_replay_user_is_refused(tmp_path: Path) -> None:
    name = "c" * 60  # a valid user name; with "-replay", 67 characters
    plan = derive_users(settings(tmp_path, username=name, mqtt=f'client_id = "{name}"'))
    assert [k for k, _ in plan.problems] == ["mqtt.username"]
    assert plan.problems[0][1].startswith("with '-replay' added (its replay user) it cannot be")


def test_a_note_when_this_files_agent_has_another_client_id(tmp_path: Path) -> None:
    def notes(agent: str) -> list[str]:
        plan = derive_users(settings(tmp_path, extra=f"[agent]\n{agent}\n"))
        return [n for n in plan.notes if n.startswith("agent.client_id")]

    assert notes('id = "dock-a"') == [  # its default client id is fleet-agent-dock-a
        "agent.client_id: this file's agent 'dock-a' connects with another client id, but "
        "the generated broker names its session 'dock-a' (its user name); set "
        'agent.client_id = "dock-a" so that its log and the broker\'s agree'
    ]
    assert notes('id = "dock-a"\nclient_id = "dock-a"') == []
    assert notes('id = "not-registered"') == []  # not an agent of this registry
