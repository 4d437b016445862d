"""Sessions on the generated broker belong to user names: nobody takes the collector's.

Measured before the fix (Mosquitto 2.0.11, the generated configuration without
`use_username_as_clientid`): OwnTracks user alice, connecting with client id
`fleet-collector` and a persistent session, was handed the collector's session; the
reading queued in it was not delivered to her (her ACL) and was gone when the collector
came back. The first test shows that this no longer happens, the second that it did
(the same steps on the configuration without the directive), so the first can fail.

`fleet deadletters replay` publishes as a user of its own: as the collector's user its
clean session would take over and wipe the collector's persistent session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.daemon.cli import main as fleet
from tests.daemon.broker.helpers import credential
from tests.daemon.broker.secured import (
    Secured,
    connected,
    keep,
    kept,
    running,
    secured_broker,
    stored,
    topic,
    until,
)
from tests.harness.fleet import telemetry
from tests.harness.servers import InfluxServer
from tests.harness.waiting import wait_until

OWN = topic("allingtown", "segway", "sw-01")  # dock-a's device
DIRECTIVE = "use_username_as_clientid true"


def seqs(influx: InfluxServer, db: str) -> list[int]:
    return sorted(r["seq"] for r in stored(influx, db, "SELECT seq FROM battery"))


def reading(seq: int) -> bytes:
    return telemetry("sw-01", seq, int(time.time() * 1000) + seq)


def subscribed_then_stopped(secured: Secured, influx: InfluxServer, db: str) -> FleetSettings:
    """The collector made its persistent session (seq 1 stored), then stopped; seq 2 is
    queued in that session by dock-a."""
    settings = secured.settings("fleet-collector")
    with running(settings), connected(secured.probe("dock-a")) as agent:
        until(lambda: agent.publish(OWN, reading(1)), lambda: seqs(influx, db), "seq 1 stored")
    with connected(secured.probe("dock-a")) as agent:
        assert agent.publish(OWN, reading(2)) == 0
    return settings


def alice_as_the_collector(secured: Secured, v5: bool) -> bool:
    """Alice logs in with the collector's client id, asking for its persistent session;
    whether the broker handed her a session."""
    alice = secured.probe("alice", client_id="fleet-collector", persistent=True, v5=v5)
    with connected(alice):
        alice.subscribe("owntracks/alice/#")
    assert alice.session_present is not None
    return alice.session_present


@pytest.fixture
def bare(tmp_path: Path, capsys: Any, influx: InfluxServer, tmp_db: str) -> Iterator[Secured]:
    """The generated broker without the directive: the configuration as it was."""

    def without(conf: str) -> str:
        assert DIRECTIVE in conf
        return conf.replace(DIRECTIVE, "")

    with secured_broker(
        tmp_path, capsys, influx_url=influx.url, database=tmp_db, edit_conf=without
    ) as broker:
        yield broker


def test_one_user_has_one_connection_the_newest(secured: Secured) -> None:
    """An officer with two phones under one OwnTracks user: the second connection closes
    the first (one user per phone is the fix)."""
    with (
        connected(secured.probe("alice", client_id="phone-1")) as first,
        connected(secured.probe("alice", client_id="phone-2")) as second,
    ):
        wait_until(first.dropped.is_set, message="the first phone's connection closed")
        assert not second.dropped.is_set()
    assert "Client alice already connected, closing old connection." in secured.broker.log_text()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt3.1.1"])
def test_a_user_with_the_collectors_client_id_does_not_touch_its_session(
    secured: Secured, influx: InfluxServer, tmp_db: str, v5: bool
) -> None:
    settings = subscribed_then_stopped(secured, influx, tmp_db)
    assert alice_as_the_collector(secured, v5) is False  # a session of her own, a new one
    # Mosquitto names the connection by her user name, whatever client id she sent.
    wait_until(
        lambda: f"as alice (p{5 if v5 else 2}, c0" in secured.broker.log_text(),
        message="alice's connection named 'alice' in mosquitto's log",
    )
    with running(settings) as collector:
        wait_until(lambda: seqs(influx, tmp_db) == [1, 2], message="the queued seq 2 stored")
        assert collector.link.session_present is True
        assert collector.session_lost == 0


def test_without_the_directive_the_collectors_session_is_taken(
    bare: Secured, influx: InfluxServer, tmp_db: str
) -> None:
    """The attack as measured, on the configuration without `use_username_as_clientid`."""
    settings = subscribed_then_stopped(bare, influx, tmp_db)
    assert alice_as_the_collector(bare, v5=True) is True  # the collector's session
    with running(settings), connected(bare.probe("dock-a")) as agent:
        # Mosquitto delivers a session's queue before anything newer: once seq 3 is
        # stored, seq 2 would have been, had it still been queued.
        assert agent.publish(OWN, reading(3)) == 0
        wait_until(lambda: 3 in seqs(influx, tmp_db), message="seq 3 stored")
        assert seqs(influx, tmp_db) == [1, 3]  # seq 2 went to alice's session and was lost


# --- fleet deadletters replay ------------------------------------------------------------------


def replay(
    capsys: pytest.CaptureFixture[str], secured: Secured, *extra: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = fleet(["deadletters", "replay", "--config", str(secured.config), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def password_file(secured: Secured, user: str) -> str:
    return str(secured.out / "credentials" / user)


def test_replay_as_its_own_user_leaves_a_stopped_collectors_queue_alone(
    secured: Secured, influx: InfluxServer, tmp_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = secured.settings("fleet-collector")
    with running(settings), connected(secured.probe("dock-a")) as agent:
        until(lambda: agent.publish(OWN, reading(1)), lambda: seqs(influx, tmp_db), "seq 1")
        assert agent.publish(OWN, b"{not json") == 0
        wait_until(lambda: kept(settings), message="the malformed message kept")
    with connected(secured.probe("dock-a")) as agent:  # the collector is away: queued
        assert agent.publish(OWN, reading(2)) == 0

    # As the collector's own user: refused before anything connects.
    collector_pw = password_file(secured, "fleet-collector")
    code, out, err = replay(
        capsys, secured, "--mqtt-user", "fleet-collector", "--mqtt-password-file", collector_pw
    )
    assert code == 78, err
    assert "--mqtt-user: fleet-collector is the broker user of mqtt.username (collector)" in err
    assert "replayed" not in out
    assert credential(secured.out, "fleet-collector") not in err + out
    assert [k.replayed_ms for k in kept(settings)] == [None]

    # As the replay user that broker-config made (the default user name).
    replay_pw = password_file(secured, "fleet-collector-replay")
    code, out, err = replay(capsys, secured, "--mqtt-password-file", replay_pw)
    assert code == 0, err
    assert "replayed 1 of 1" in out
    assert kept(settings)[0].replayed_ms is not None

    with running(settings) as collector:
        wait_until(lambda: seqs(influx, tmp_db) == [1, 2], message="the queued seq 2 stored")
        assert collector.session_lost == 0
        # The replayed original reached the collector through its queue too: still
        # malformed, it is a new dead letter.
        wait_until(lambda: len(kept(settings)) == 2, message="the replayed message judged anew")


@pytest.mark.parametrize("user", ["dock-a", "alice", "ops"])
def test_replay_refuses_every_user_of_another_client(
    secured: Secured, capsys: pytest.CaptureFixture[str], user: str
) -> None:
    settings = secured.settings("fleet-collector")
    keep(settings, OWN)
    code, _, err = replay(
        capsys, secured, "--mqtt-user", user, "--mqtt-password-file", password_file(secured, user)
    )
    assert code == 78
    assert f"--mqtt-user: {user} is the broker user of " in err
    assert "Use the replay user fleet-collector-replay" in err


def test_replay_without_the_replay_users_password_says_where_it_is(
    secured: Secured, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secured.settings("fleet-collector")
    keep(settings, OWN)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, _, err = replay(capsys, secured)
    assert code == 78
    assert "the password of fleet-collector-replay is needed" in err
    assert "DIR/credentials/fleet-collector-replay" in err
    # ...or as the systemd credential.
    creds = secured.out.parent / "creds"
    creds.mkdir()
    (creds / "mqtt.replay_password").write_text(credential(secured.out, "fleet-collector-replay"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    code, out, err = replay(capsys, secured)
    assert code == 0, err
    assert "replayed 1 of 1" in out
