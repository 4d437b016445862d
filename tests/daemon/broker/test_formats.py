"""Mosquitto's own formats: the password file (against the real mosquitto_passwd), the ACL
and mosquitto.conf as rendered (that the real broker takes them: test_real_broker.py)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.daemon.broker import acl, mosquitto_conf, passwords
from fleet.daemon.broker.mosquitto_conf import NO_LOSS_DIRECTIVES, BrokerFiles
from fleet.daemon.broker.users import derive_users
from tests.daemon.broker.helpers import fleet_toml
from tests.harness.base import find_binary

HASH_RE = re.compile(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")


def real_mosquitto_passwd(tmp_path: Path, user: str, password: str) -> str:
    """The hash the real mosquitto_passwd (2.0) writes for `password`."""
    file = tmp_path / "pw"
    binary = find_binary("mosquitto_passwd")
    subprocess.run([binary, "-c", "-b", str(file), user, password], check=True)
    name, _, encoded = file.read_text().strip().partition(":")
    assert name == user
    return encoded


def test_our_hash_has_the_shape_of_mosquitto_passwd(tmp_path: Path) -> None:
    theirs = real_mosquitto_passwd(tmp_path, "u", "correct horse battery")
    ours = passwords.hash_password("correct horse battery")
    assert HASH_RE.fullmatch(theirs), theirs  # 101 iterations, 12-byte salt, 64-byte hash
    assert HASH_RE.fullmatch(ours), ours
    assert len(base64.b64decode(ours.split("$")[3])) == passwords.SALT_BYTES == 12


def test_we_verify_mosquitto_passwd_hashes_so_the_algorithm_is_the_same(tmp_path: Path) -> None:
    theirs = real_mosquitto_passwd(tmp_path, "u", "Pw-7zq-long-enough")
    assert passwords.verify(theirs, "Pw-7zq-long-enough")
    assert not passwords.verify(theirs, "Pw-7zq-long-enougH")
    # Same salt, same password: the same bytes as mosquitto_passwd.
    salt = base64.b64decode(theirs.split("$")[3])
    assert passwords.hash_password("Pw-7zq-long-enough", salt=salt) == theirs


@pytest.mark.parametrize(
    "encoded",
    ["", "plain", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!!$AAAA", "$7$99999999999$AA$AA"],
)
def test_verify_refuses_what_is_not_a_hash(encoded: str) -> None:
    assert not passwords.verify(encoded, "anything-at-all")


def test_a_hash_is_kept_while_the_password_verifies() -> None:
    old = passwords.hash_password("first-password-1")
    kept = passwords.entries_for([("a", "first-password-1")], {"a": old})
    assert kept == [("a", old)]
    changed = passwords.entries_for([("a", "second-password-2")], {"a": old})
    assert changed[0][1] != old
    assert passwords.verify(changed[0][1], "second-password-2")


def test_password_file_round_trip_skips_garbage_lines() -> None:
    text = passwords.render([("a", "$7$1$x$y"), ("b", "$7$2$x$y")]) + "garbage\n:x\nc:\n"
    assert text.startswith("a:$7$1$x$y\nb:$7$2$x$y\n")
    assert passwords.parse(text) == {"a": "$7$1$x$y", "b": "$7$2$x$y"}


def test_acl_is_per_user_topic_lines_only(tmp_path: Path) -> None:
    plan = derive_users(load_settings(fleet_toml(tmp_path), environ={}))
    text = acl.render(plan.users, ["# header"])
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "user fleet-collector"  # nothing granted to anonymous clients
    assert all(line.split()[0] in ("user", "topic") for line in rules)  # no `pattern`
    assert [line for line in rules if line.startswith("user ")] == [
        f"user {u.name}" for u in plan.users
    ]
    assert len([r for r in rules if r.startswith("topic ")]) == sum(
        len(u.rights) for u in plan.users
    )
    assert "user dock-a\n# its own availability" in text
    assert "topic write fleet/v1/allingtown/segway/sw-01/telemetry\n" in text


def _directives(text: str) -> list[tuple[str, str, str]]:
    """(name, value, the comment just above) of every directive line."""
    out, why = [], ""
    for line in text.splitlines():
        if line.startswith("#"):
            why = f"{why} {line[1:].strip()}".strip()
        elif line.strip():
            name, _, value = line.partition(" ")
            out.append((name, value, why))
            why = ""
        else:
            why = ""
    return out


def test_conf_states_the_no_loss_settings_each_with_its_reason(tmp_path: Path) -> None:
    settings = load_settings(fleet_toml(tmp_path), environ={})
    files = BrokerFiles(tmp_path / "out")
    text = mosquitto_conf.render(
        mosquitto_conf.standard_sections(settings.broker, files, "mosquitto"), ["# header"]
    )
    found = {name: (value, why) for name, value, why in _directives(text)}
    assert found["allow_anonymous"][0] == "false"
    assert found["per_listener_settings"][0] == "false"
    assert found["password_file"][0] == str(files.passwords)
    assert found["acl_file"][0] == str(files.acl)
    assert found["persistence"][0] == "true"
    assert found["persistence_location"][0] == f"{tmp_path / 'mosquitto-data'}/"
    assert found["max_queued_messages"][0] == "1000000"
    assert found["persistent_client_expiration"][0] == "7d"
    assert found["listener"][0] == "18830 127.0.0.1"
    assert found["user"][0] == "mosquitto"
    for name in NO_LOSS_DIRECTIVES:
        assert len(found[name][1]) > 40, f"{name} has no reason above it"
    assert "certfile" not in found  # no TLS asked


def test_conf_tls_listener(tmp_path: Path) -> None:
    tls = f'tls = true\ncertfile = "{tmp_path}/s.pem"\nkeyfile = "{tmp_path}/s.key"\n'
    settings = load_settings(fleet_toml(tmp_path, broker=tls), environ={})
    sections = mosquitto_conf.standard_sections(settings.broker, BrokerFiles(tmp_path), "m")
    names = [d[0] for d in _directives(mosquitto_conf.render(sections, []))]
    after = names[names.index("listener") :]  # listener options follow their listener
    assert after == [
        "listener",
        "use_username_as_clientid",  # after its listener: before, Mosquitto 2.0 ignores it
        "certfile",
        "keyfile",
        "tls_version",
    ]  # no cafile unless set
    with_ca = load_settings(
        fleet_toml(tmp_path, broker=tls + f'cafile = "{tmp_path}/ca.pem"'), environ={}
    )
    sections = mosquitto_conf.standard_sections(with_ca.broker, BrokerFiles(tmp_path), "m")
    assert "cafile" in [d[0] for d in _directives(mosquitto_conf.render(sections, []))]


def test_extra_sections_follow_the_standard_ones(tmp_path: Path) -> None:
    settings = load_settings(fleet_toml(tmp_path), environ={})
    bridge = mosquitto_conf.Section(
        "Bridge", (mosquitto_conf.Directive("connection", "central", "why"),)
    )
    sections = [*mosquitto_conf.standard_sections(settings.broker, BrokerFiles(tmp_path), "m")]
    text = mosquitto_conf.render([*sections, bridge], [])
    assert text.rstrip().endswith("# --- Bridge ---\n# why\nconnection central")


@pytest.mark.parametrize(
    ("broker", "out", "key"),
    [
        ('persistence_location = "relative/data"', "/abs/out", "broker.persistence_location"),
        ("", "/abs/with space", "--out"),
        ("", "relative-out", "--out"),
    ],
)
def test_paths_the_conf_cannot_hold(tmp_path: Path, broker: str, out: str, key: str) -> None:
    toml = fleet_toml(tmp_path, broker=broker)
    if broker:  # replace the helper's own persistence_location
        text = toml.read_text()
        text = re.sub(r'persistence_location = "[^"]*"\n', "", text, count=1)
        toml.write_text(text)
    settings = load_settings(toml, environ={})
    problems = mosquitto_conf.path_problems(settings.broker, BrokerFiles(Path(out)))
    assert [k for k, _ in problems] == [key]
