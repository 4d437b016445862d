"""`fleet broker-config --config FILE --out DIR`: the Mosquitto broker, generated from the registry.

Writes DIR/mosquitto.conf, DIR/acl, DIR/passwords and a password per user in
DIR/credentials/<user>, so that `mosquitto -c DIR/mosquitto.conf` runs as it is. Running
it again with the same configuration changes nothing (same bytes, same mtimes); a user
added to the configuration gets a password, a user removed loses it. Passwords are never
printed. Exit codes: 0 written; 78 (EX_CONFIG) the configuration cannot make a broker
(every problem is listed as `FILE: key: message`); 1 a file could not be read or written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.config import ConfigError, FleetSettings, resolve_config_path
from fleet.config.base import Loc
from fleet.config.loader import load_with
from fleet.config.sources import SourcePlan
from fleet.daemon.broker import acl, bridge, collectors, mosquitto_conf, passwords
from fleet.daemon.broker.access import Account, problems
from fleet.daemon.broker.files import (
    CredentialError,
    Credentials,
    Ownership,
    ensure_dir,
    write_if_changed,
)
from fleet.daemon.broker.mosquitto_conf import BrokerFiles, Section
from fleet.daemon.broker.users import BrokerUser, Role, derive_users
from fleet.daemon.cli_support import EX_CONFIG

_RUN_AS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `broker-config` on the `fleet` command's sub-parsers."""
    parser = subparsers.add_parser(
        "broker-config",
        help="write Mosquitto's configuration, ACL and passwords from the registry",
        description="Write DIR/mosquitto.conf, DIR/acl, DIR/passwords and a password per "
        "broker user in DIR/credentials/ (made once, never printed), from [broker], "
        "[[agents]], [[devices]] and [mqtt]. Run it again after changing them.",
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="the fleet's TOML configuration (default: $FLEET_CONFIG)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="folder of the generated files, e.g. /etc/fleet/broker",
    )  # fmt: skip
    parser.add_argument(
        "--run-as", default="mosquitto", metavar="USER",
        help="the system user mosquitto switches to when started as root (its `user` "
        "option; default: mosquitto); the files are made readable by its group",
    )  # fmt: skip
    parser.add_argument(
        "--role", choices=bridge.ROLES, default="single",
        help="single (default): one broker; substation: add the bridge up to the central "
        "broker ([broker.bridge]); central: add a bridge user per broker.bridge_sites",
    )  # fmt: skip
    parser.add_argument(
        "--root", type=Path, default=None, metavar="DIR",
        help="an image (scripts/install --root): --config, --out and the files the broker "
        "needs (broker.bridge.password_file) are read and written inside DIR, and named in "
        "the files as the machine will see them; the group is --run-as's in DIR/etc/passwd. "
        "No other file of the configuration is opened (the fleet's other secrets are not "
        "needed), with or without --root",
    )  # fmt: skip
    parser.set_defaults(handler=run)


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    new_passwords: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    if path is None:
        return _fail("name the configuration file: --config FILE (or FLEET_CONFIG)", EX_CONFIG)
    root = Path(os.path.abspath(args.root)) if args.root is not None else None
    source = Path(os.path.abspath(path))
    settings = _load(inside(root, source), source)
    if settings is None:
        return EX_CONFIG
    files = BrokerFiles(Path(os.path.abspath(args.out)))
    disk = BrokerFiles(inside(root, files.out))  # where they are written: files, in an image
    plan = derive_users(settings)
    users, role_problems = bridge.users_for(args.role, settings, plan.users)
    found = [*plan.problems, *role_problems, *mosquitto_conf.path_problems(settings.broker, files)]
    if not _RUN_AS_RE.fullmatch(args.run_as):
        found.append(("--run-as", "not a system user name"))
    if found:
        for key, message in found:
            where = "fleet broker-config" if key.startswith("--") else str(source)
            sys.stderr.write(f"{where}: {key}: {message}\n")
        return EX_CONFIG
    account = Account.lookup(args.run_as) if root is None else None
    # As root we own the files; mosquitto, once it has switched user, reads them by group.
    gid = account.gid if account is not None else _image_gid(root, args.run_as)
    gid = gid if os.geteuid() == 0 else None
    try:
        tail = _sections(args.role, settings, root)
    except (OSError, ValueError) as exc:  # names the password file, never the password
        return _fail(f"broker.bridge.password_file: {exc}")
    try:
        outcome = _write(settings, source, files, disk, users, args.run_as, gid, tail)
    except CredentialError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or disk.out}: {exc.strerror}")
    _report(files, disk, users, outcome)
    notes = [*plan.notes, *collectors.broker_notes(settings)]
    if root is None:  # this machine's accounts say nothing of the image's
        notes += _access_notes(settings, files, account, args.run_as, args.role)
    for note in notes:
        sys.stderr.write(f"fleet broker-config: note: {note}\n")
    return 0


def inside(root: Path | None, path: Path) -> Path:
    """`path` (absolute) as seen from here when the machine's / is `root`."""
    return path if root is None else root / path.relative_to(path.anchor)


def _image_gid(root: Path | None, name: str) -> int | None:
    """The primary group of user `name` in the image's own passwd; None if it has none."""
    if root is None:
        return None
    try:
        lines = (root / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == name and fields[3].isdigit():
            return int(fields[3])
    return None


def _sections(role: str, settings: FleetSettings, root: Path | None) -> list[Section]:
    """What goes after the standard sections: the bridge of a sub-station (its password
    read from the image when there is one)."""
    password_file = settings.broker.bridge.password_file
    if role != "substation" or root is None or password_file is None:
        return bridge.sections_for(role, settings)
    return [bridge.substation_section(settings, bridge.read_password(inside(root, password_file)))]


def _load(path: Path, shown: Path) -> FleetSettings | None:
    """The settings as the broker's files need them: from the TOML file at `path` (inside
    the image with --root) and the environment, opening no other file (see `_NoOtherFiles`)."""
    try:
        return load_with(_NoOtherFiles(path))
    except ConfigError as exc:  # the TOML file itself, or what it holds
        for problem in exc.problems:
            # In an image the file is named as the machine will see it.
            sys.stderr.write(problem.replace(str(path), str(shown), 1) + "\n")
        return None


# A stand-in for a secret the broker's files never use: 32 hex digits, so that a BTHome
# bind_key takes it too. It is never written anywhere: only the users' own passwords are.
_UNREAD = "0" * 32


class _NoOtherFiles(SourcePlan):
    """Loading that opens no file but the TOML file, nor checks that any other exists.

    The broker's files use none of the fleet's secrets (the InfluxDB token, the notification
    URLs, the collector's mqtt.password_file - on a first run the very credential this
    command is about to write -, the agent's BTHome keys): a secret whose `*_file` key is
    set is taken as given, its file unopened, and systemd credentials are not looked at.
    Nor do they use the collector's TLS client files or the board's certificate, which
    loading checks exist. Read or checked, all of them would be at this machine's paths,
    not the image's (--root): failing on a build host without them, or reading its own.
    """

    _CHECKED = ("tls_cert", "tls_key")  # http's: loading checks that they are files
    _CHECKED_ENV = ("FLEET_HTTP__TLS_CERT", "FLEET_HTTP__TLS_KEY")

    def __init__(self, path: Path) -> None:
        environ = {k: v for k, v in os.environ.items() if k.upper() not in self._CHECKED_ENV}
        environ["FLEET_MQTT__TLS__ENABLED"] = "false"  # its files are checked only when on
        super().__init__(FleetSettings, path, environ, defer_problems=True)
        http = self.toml_data.get("http")
        if isinstance(http, dict):
            self.toml_data["http"] = {k: v for k, v in http.items() if k not in self._CHECKED}

    def credential(self, name: str, loc: Loc, *, lines: bool = False) -> str | list[str] | None:
        return None

    def secret_file(
        self, file_loc: Loc, named: Any, loc: Loc, *, lines: bool = False
    ) -> str | list[str] | None:
        if not isinstance(named, str | os.PathLike) or not str(named):
            return None
        return [_UNREAD] if lines else _UNREAD


def _write(
    settings: FleetSettings,
    source: Path,
    files: BrokerFiles,
    disk: BrokerFiles,
    users: Sequence[BrokerUser],
    run_as: str,
    gid: int | None,
    tail: Sequence[Section] = (),
) -> Outcome:
    """`files` are named in the files' text, written at `disk` (the same but in an image)."""
    outcome = Outcome()
    ensure_dir(disk.out, Ownership(0o750, gid))
    ensure_dir(disk.credentials, Credentials.FOLDER)
    store = Credentials(disk.credentials)
    secrets: list[tuple[str, str]] = []
    for user in users:
        password, new = store.password(user.name)
        secrets.append((user.name, password))
        if new:
            outcome.new_passwords.append(user.name)
    try:
        existing = passwords.parse(disk.passwords.read_text(encoding="utf-8"))
    except (FileNotFoundError, UnicodeDecodeError):
        existing = {}
    header = acl.comment(
        f"Generated by `fleet broker-config` from {source}: do not edit, change the "
        "configuration and run the command again (then `systemctl reload mosquitto`)."
    )
    sections = [*mosquitto_conf.standard_sections(settings.broker, files, run_as), *tail]
    shared = Ownership(0o640, gid)
    for target, text in [
        (disk.conf, mosquitto_conf.render(sections, header)),
        (disk.acl, acl.render(users, header)),
        (disk.passwords, passwords.render(passwords.entries_for(secrets, existing))),
    ]:
        changed = write_if_changed(target, text.encode(), shared)
        (outcome.written if changed else outcome.unchanged).append(target)
    outcome.removed = store.remove_others({user.name for user in users})
    return outcome


def _report(
    files: BrokerFiles, disk: BrokerFiles, users: Sequence[BrokerUser], outcome: Outcome
) -> None:
    out = sys.stdout
    for path in outcome.written:
        out.write(f"wrote      {path}\n")
    for path in outcome.unchanged:
        out.write(f"unchanged  {path}\n")
    for name in outcome.new_passwords:
        out.write(f"new password for {name} in {disk.credentials / name}\n")
    for name in outcome.removed:
        out.write(f"removed {disk.credentials / name}: {name} is no longer configured\n")
    width = max((len(u.name) for u in users), default=0)
    out.write(f"\nbroker users ({len(users)}):\n")
    for user in users:
        out.write(f"  {user.name:<{width}}  {user.role:<9}  {user.summary}\n")
    out.write(
        f"\nstart:  mosquitto -c {files.conf}\n"
        "after a change:  systemctl reload mosquitto (re-reads passwords and acl; a new "
        "listener or certificate, or use_username_as_clientid new in mosquitto.conf, needs "
        "a restart)\n"
        f"clients: the password of user U is in {files.credentials}/U - give it as "
        "mqtt.password_file, or as the systemd credential mqtt.password "
        "(LoadCredential=mqtt.password:<that file>)\n"
    )
    for user in users:
        if user.role is Role.REPLAY:
            out.write(
                f"replay:  fleet deadletters replay --mqtt-password-file "
                f"{files.credentials / user.name} (as {user.name}, never as the collector)\n"
            )


def _access_notes(
    settings: FleetSettings, files: BrokerFiles, account: Account | None, run_as: str, role: str
) -> list[str]:
    if os.geteuid() != 0:
        return []  # mosquitto started by us runs as us, and we just wrote the files
    if account is None:
        return [
            f"there is no system user {run_as}: mosquitto started as root will refuse to "
            "start, or fall back to 'nobody' (install the mosquitto package, or pass --run-as)"
        ]
    broker = settings.broker
    reads = [files.conf, files.passwords, files.acl]
    if broker.tls:
        reads += [p for p in (broker.certfile, broker.keyfile, broker.cafile) if p is not None]
    if role == "substation" and broker.bridge.tls and broker.bridge.cafile is not None:
        # Read by the bridge at each connect, long after mosquitto switched user.
        reads.append(broker.bridge.cafile)
    return problems(account, reads, [broker.persistence_location])


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"fleet broker-config: {message}\n")
    return code
