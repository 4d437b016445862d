"""Can the user Mosquitto runs as reach what it needs? Checked before anyone starts it.

Mosquitto 2.0, started as root, switches to its `user` first and only then reads the
password file, the ACL and the TLS key, and writes its database (measured on 2.0.11: a
password file that only root can read stops it with "Unable to open pwfile"). A folder on
the way that it cannot enter is the usual culprit (`/etc/fleet` at 0750 root:fleet).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int  # its primary group: the generated files' group
    gids: frozenset[int]  # every group it is in

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        groups = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, entry.pw_uid, entry.pw_gid, frozenset({entry.pw_gid, *groups}))


def _may(account: Account, info: os.stat_result, want: int) -> bool:
    """`want` is a mask of os.R_OK / os.W_OK / os.X_OK, checked as the kernel would."""
    if account.uid == 0:
        return True
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == account.uid:
        bits = mode >> 6
    elif info.st_gid in account.gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _describe(path: Path, info: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{path} is {stat.S_IMODE(info.st_mode):04o} {owner}:{group}"


def blocked(account: Account, path: Path, *, write: bool = False) -> str | None:
    """Why `account` cannot read (or, with `write`, create files in) `path`; None if it can."""
    for folder in reversed(path.parents):
        try:
            info = folder.stat()
        except OSError:
            return f"{folder} does not exist"
        if not _may(account, info, os.X_OK):
            return _describe(folder, info)
    try:
        info = path.stat()
    except OSError:
        return f"{path} does not exist"
    want = os.W_OK | os.X_OK if write else os.R_OK
    return None if _may(account, info, want) else _describe(path, info)


def problems(account: Account, reads: list[Path], writes: list[Path]) -> list[str]:
    found: list[str] = []
    for path in reads:
        why = blocked(account, path)
        if why is not None:
            found.append(f"mosquitto (user {account.name}) cannot read {path}: {why}")
    for path in writes:
        why = blocked(account, path, write=True)
        if why is not None:
            found.append(f"mosquitto (user {account.name}) cannot write in {path}: {why}")
    return found
