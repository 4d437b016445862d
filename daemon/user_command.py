"""`fleet user add|remove|list`: the collector's users in the TOML file's [http.users].

`add` asks for the password twice (or reads one line with --password-stdin, for scripts),
refuses one shorter than 10 characters, and writes its scrypt hash; the file keeps its
comments, layout, mode and owner (tomlkit edits in place; the new text replaces the old
atomically). Neither the password nor the hash is ever printed. The collector reads the
users at start: restart it after a change.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import SecretStr, ValidationError
from tomlkit.items import InlineTable, Table

from fleet.config import resolve_config_path
from fleet.config.collector import USER_RE, HttpSettings
from fleet.daemon.cli_support import EX_CONFIG
from fleet.daemon.collector.http.auth import MIN_PASSWORD_CHARS, hash_password


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `user` (add, remove, list) on the `fleet` command's sub-parsers."""
    parser = subparsers.add_parser(
        "user",
        help="add, remove or list the users of the board and HTTP API",
        description="Edit [http.users] of the configuration file: user name -> scrypt hash.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in [
        ("add", "add a user or set a new password (prompted twice)"),
        ("remove", "remove a user (their sessions end when the collector restarts)"),
        ("list", "list the user names"),
    ]:
        action = actions.add_parser(name, help=text, description=text)
        if name != "list":
            action.add_argument("name", metavar="NAME", help="the user name")
        action.add_argument(
            "--config", type=Path, default=None, metavar="FILE",
            help="TOML file to edit (default: $FLEET_CONFIG)",
        )  # fmt: skip
        if name == "add":
            action.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of stdin instead of prompting",
            )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    if path is None:
        return _fail("name the configuration file: --config FILE (or FLEET_CONFIG)", EX_CONFIG)
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror}", EX_CONFIG)
    except tomlkit.exceptions.ParseError as exc:
        return _fail(f"{path} is not valid TOML: {exc}", EX_CONFIG)
    users = _users_table(document)
    if args.action == "list":
        sys.stdout.write("".join(f"{user}\n" for user in sorted(users)))
        return 0
    name: str = args.name
    if args.action == "remove":
        if name not in users:
            return _fail(f"no user {name!r} in {path}")
        del users[name]
        _write(path, document)
        sys.stdout.write(f"removed user {name!r} from {path}; restart the collector\n")
        return 0
    if not USER_RE.fullmatch(name):
        return _fail(
            "user names are 1-64 letters, digits, '_', '.', '@' or '-', starting with a "
            "letter or digit"
        )
    password = _password(args.password_stdin)
    if password is None:
        return 1
    existed = name in users
    users[name] = hash_password(password)
    problem = _check(document)
    if problem:
        return _fail(f"{path}: [http] would not load: {problem}", EX_CONFIG)
    _write(path, document)
    what = "new password for" if existed else "added user"
    sys.stdout.write(f"{what} {name!r} in {path}; restart the collector\n")
    return 0


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"fleet user: {message}\n")
    return code


def _password(from_stdin: bool) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            _fail("the two passwords differ; nothing changed")
            return None
    if len(password) < MIN_PASSWORD_CHARS:
        _fail(f"the password is shorter than {MIN_PASSWORD_CHARS} characters; nothing changed")
        return None
    return password


def _users_table(document: tomlkit.TOMLDocument) -> Table | InlineTable:
    http = document.get("http")
    if http is None:
        http = tomlkit.table()
        document["http"] = http
    users = http.get("users")
    if users is None:
        users = tomlkit.table()
        http["users"] = users
    assert isinstance(users, Table | InlineTable), "[http.users] is a table"
    return users


def _check(document: tomlkit.TOMLDocument) -> str | None:
    """Why the edited [http] table would not load, in words without the values."""
    http = tomllib.loads(tomlkit.dumps(document)).get("http", {})
    try:
        HttpSettings.model_validate(
            {**http, "users": {k: SecretStr(v) for k, v in http.get("users", {}).items()}}
        )
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return None


def _write(path: Path, document: tomlkit.TOMLDocument) -> None:
    """Replace the file at once (a crash leaves the old or the new), same mode and owner."""
    info = path.stat()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(tomlkit.dumps(document))
            file.flush()
            os.fchmod(file.fileno(), info.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):  # not root: the owner is us anyway
                os.fchown(file.fileno(), info.st_uid, info.st_gid)
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
