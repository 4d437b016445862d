"""`fleet broker-config` on files: what it writes, with which modes; a second run changes
nothing; users come and go; bad names are refused with the key at fault; no password is
ever printed."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon.broker import passwords
from fleet.daemon.broker.files import MIN_PASSWORD_CHARS
from tests.daemon.broker.helpers import REGISTRY, broker_config, credential, fleet_toml

USERS = ["fleet-collector", "fleet-collector-replay", "dock-a", "dock-w", "alice", "bob", "ops"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(out: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and folder under `out`: (content, mtime in ns, mode)."""
    found = {}
    for path in sorted([out, *out.rglob("*")]):
        data = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(out))] = (data, path.stat().st_mtime_ns, mode(path))
    return found


def assert_no_secret(out: Path, *texts: str) -> None:
    for user in os.listdir(out / "credentials"):
        secret = credential(out, user)
        for text in texts:
            assert secret not in text, f"the password of {user} was printed"


def test_first_run_writes_every_file_with_its_mode(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    code, stdout, stderr = broker_config(fleet_toml(tmp_path), out, capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "acl",
        "credentials",
        "mosquitto.conf",
        "passwords",
    ]
    assert mode(out) == 0o750
    assert {mode(out / n) for n in ("acl", "mosquitto.conf", "passwords")} == {0o640}
    assert mode(out / "credentials") == 0o700
    assert sorted(os.listdir(out / "credentials")) == sorted(USERS)
    assert {mode(p) for p in (out / "credentials").iterdir()} == {0o600}
    entries = passwords.parse((out / "passwords").read_text())
    assert list(entries) == USERS
    for user in USERS:
        secret = credential(out, user)
        assert len(secret) >= 40
        assert passwords.verify(entries[user], secret)
        assert f"new password for {user} in {out / 'credentials' / user}" in stdout
    assert f"start:  mosquitto -c {out / 'mosquitto.conf'}" in stdout
    assert "  dock-a                  agent      site allingtown" in stdout
    replay = out / "credentials" / "fleet-collector-replay"
    assert f"replay:  fleet deadletters replay --mqtt-password-file {replay}" in stdout
    assert_no_secret(out, stdout, stderr)


def test_second_run_changes_nothing(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    config = fleet_toml(tmp_path)
    assert broker_config(config, out, capsys)[0] == 0
    before = snapshot(out)
    code, stdout, stderr = broker_config(config, out, capsys)
    assert code == 0
    assert snapshot(out) == before  # same bytes, same mtimes, same modes
    assert "wrote" not in stdout
    assert "new password" not in stdout
    assert stdout.count("unchanged  ") == 3
    assert_no_secret(out, stdout, stderr)


def test_a_mode_that_drifted_is_put_back_without_rewriting(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    config = fleet_toml(tmp_path)
    assert broker_config(config, out, capsys)[0] == 0
    (out / "passwords").chmod(0o644)
    (out / "credentials" / "ops").chmod(0o644)
    mtime = (out / "passwords").stat().st_mtime_ns
    assert broker_config(config, out, capsys)[0] == 0
    assert mode(out / "passwords") == 0o640
    assert mode(out / "credentials" / "ops") == 0o600
    assert (out / "passwords").stat().st_mtime_ns == mtime


def test_users_added_and_removed(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    assert broker_config(fleet_toml(tmp_path), out, capsys)[0] == 0
    kept = {u: credential(out, u) for u in USERS if u != "dock-w"}
    lines = {line.split(":")[0]: line for line in (out / "passwords").read_text().splitlines()}
    # dock-w leaves, dock-b arrives (sw-02 goes with it), bob's phone is gone.
    registry = REGISTRY.replace('id = "dock-w"', 'id = "dock-b"').replace(
        'owntracks = "bob/phone"', ""
    )
    code, stdout, stderr = broker_config(fleet_toml(tmp_path, registry=registry), out, capsys)
    assert code == 0, stderr
    assert "new password for dock-b" in stdout
    assert f"removed {out / 'credentials' / 'dock-w'}: dock-w is no longer configured" in stdout
    assert f"removed {out / 'credentials' / 'bob'}" in stdout
    assert sorted(os.listdir(out / "credentials")) == sorted(
        ["fleet-collector", "fleet-collector-replay", "dock-a", "dock-b", "alice", "ops"]
    )
    for user in ("fleet-collector", "dock-a", "alice", "ops"):
        assert credential(out, user) == kept[user]  # passwords of users kept are kept
        assert lines[user] in (out / "passwords").read_text()  # and so are their hashes
    acl_text = (out / "acl").read_text()
    assert "user dock-w" not in acl_text
    assert "user bob" not in acl_text
    assert "user dock-b\n" in acl_text
    assert "topic write fleet/v1/westhaven/agent/dock-b/availability" in acl_text
    assert_no_secret(out, stdout, stderr)


def test_a_password_written_by_hand_is_used(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    (out / "credentials").mkdir(parents=True)
    (out / "credentials" / "alice").write_text("typed-on-a-phone-42\n")
    code, stdout, stderr = broker_config(fleet_toml(tmp_path), out, capsys)
    assert code == 0, stderr
    assert "new password for alice" not in stdout
    entries = passwords.parse((out / "passwords").read_text())
    assert passwords.verify(entries["alice"], "typed-on-a-phone-42")
    assert mode(out / "credentials" / "alice") == 0o600
    assert "typed-on-a-phone-42" not in stdout + stderr


def test_a_short_hand_written_password_is_refused(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    (out / "credentials").mkdir(parents=True)
    short = "x" * (MIN_PASSWORD_CHARS - 1)
    (out / "credentials" / "ops").write_text(short)
    code, stdout, stderr = broker_config(fleet_toml(tmp_path), out, capsys)
    assert code == 1
    assert f"{out / 'credentials' / 'ops'}: shorter than {MIN_PASSWORD_CHARS} characters" in stderr
    assert short not in stdout + stderr
    assert not (out / "passwords").exists()


def test_bad_names_are_refused_with_the_key_and_nothing_is_written(
    tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "broker"
    registry = REGISTRY.replace('"bob/phone"', '"bob:x/phone"').replace(
        'id = "dock-w"', 'id = "alice"'
    )
    config = fleet_toml(tmp_path, registry=registry)
    code, stdout, stderr = broker_config(config, out, capsys)
    assert code == 78
    assert stdout == ""
    lines = stderr.splitlines()
    assert lines[0].startswith(f"{config}: devices[2].owntracks: 'alice' is already the broker ")
    assert lines[1].startswith(f"{config}: devices[3].owntracks: cannot be a broker user name")
    assert len(lines) == 2
    assert not out.exists()


def test_any_config_problem_is_exit_78(tmp_path: Path, capsys: Any) -> None:
    config = fleet_toml(tmp_path, broker="autosave_interval_s = 0")
    code, _, stderr = broker_config(config, tmp_path / "broker", capsys)
    assert code == 78
    assert f"{config}: broker.autosave_interval_s:" in stderr


def test_the_collectors_password_file_may_name_the_credential_not_yet_written(
    tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "broker"
    config = fleet_toml(
        tmp_path, mqtt=f'password_file = "{out / "credentials" / "fleet-collector"}"'
    )
    code, _, stderr = broker_config(config, out, capsys)
    assert code == 0, stderr
    assert (out / "credentials" / "fleet-collector").is_file()


@pytest.mark.parametrize("run_as", ["root; rm", "a b", ""])
def test_run_as_must_be_a_user_name(tmp_path: Path, capsys: Any, run_as: str) -> None:
    code, _, stderr = broker_config(
        fleet_toml(tmp_path), tmp_path / "b", capsys, "--run-as", run_as
    )
    assert code == 78
    assert "fleet broker-config: --run-as: not a system user name" in stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files to another group")
def test_as_root_the_files_are_given_to_mosquittos_group(tmp_path: Path, capsys: Any) -> None:
    import pwd

    entry = pwd.getpwnam("mosquitto")  # the Debian package's user (scripts/setup installs it)
    out = tmp_path / "broker"
    code, _, stderr = broker_config(fleet_toml(tmp_path), out, capsys, "--run-as", "mosquitto")
    assert code == 0, stderr
    for path in (out, out / "acl", out / "passwords", out / "mosquitto.conf"):
        assert path.stat().st_gid == entry.pw_gid, path
    assert (out / "credentials").stat().st_gid == 0  # the passwords stay root's alone
    assert "user mosquitto\n" in (out / "mosquitto.conf").read_text()
    # pytest's own folders are 0700: mosquitto could not get in, and the command says so.
    assert f"note: mosquitto (user mosquitto) cannot read {out / 'passwords'}: " in stderr


def test_a_collector_client_id_other_than_its_user_is_exit_78(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "broker"
    config = fleet_toml(tmp_path, mqtt='client_id = "fleet-collector-allingtown"')
    code, stdout, stderr = broker_config(config, out, capsys)
    assert code == 78
    assert stdout == ""
    assert stderr.startswith(
        f"{config}: mqtt.client_id: differs from the collector's broker user 'fleet-collector'"
    )
    assert not out.exists()
