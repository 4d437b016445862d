"""Can the user mosquitto switches to reach its files? (Mosquitto 2.0 reads the password
file, the ACL and the TLS key only after switching: a folder on the way it cannot enter
stops it.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleet.daemon.broker.access import Account, _may, blocked, problems


def stat_of(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


STRANGER = Account("stranger", 4001, 4001, frozenset({4001, 4002}))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "want", "allowed"),
    [
        (0o600, 4001, 0, os.R_OK, True),  # its own file
        (0o060, 4001, 4001, os.R_OK, False),  # the owner's bits decide, not the group's
        (0o640, 0, 4002, os.R_OK, True),  # a supplementary group
        (0o600, 0, 4002, os.R_OK, False),
        (0o604, 0, 0, os.R_OK, True),  # others may read
        (0o750, 0, 4001, os.W_OK | os.X_OK, False),  # may enter, not create files
        (0o770, 0, 4001, os.W_OK | os.X_OK, True),
    ],
)
def test_permission_bits(mode: int, uid: int, gid: int, want: int, allowed: bool) -> None:
    assert _may(STRANGER, stat_of(mode, uid, gid), want) is allowed


def test_root_may_everything() -> None:
    root = Account("root", 0, 0, frozenset({0}))
    assert _may(root, stat_of(0o000, 4001, 4001), os.R_OK | os.W_OK)


def test_a_folder_on_the_way_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "etc-fleet"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    file = folder / "passwords"
    file.write_text("x")
    file.chmod(0o644)
    other = os.geteuid() + 4242  # owns nothing here
    account = Account("other", other, other, frozenset({other}))
    why = blocked(account, file)
    assert why is not None
    # The first folder it cannot enter: pytest's own base folders are 0700 already.
    first = next(p for p in reversed(file.parents) if not _may(account, p.stat(), os.X_OK))
    assert why.startswith(f"{first} is 0")
    me = Account("me", os.geteuid(), os.getegid(), frozenset({os.getegid()}))
    assert blocked(me, file) is None
    assert blocked(me, folder / "missing") == f"{folder / 'missing'} does not exist"


def test_problems_name_the_user_and_what_it_cannot_do(tmp_path: Path) -> None:
    other = os.geteuid() + 4242
    account = Account("mosq", other, other, frozenset({other}))
    found = problems(account, [tmp_path / "passwords"], [tmp_path / "data"])
    assert found[0].startswith(f"mosquitto (user mosq) cannot read {tmp_path / 'passwords'}: ")
    assert found[1].startswith(f"mosquitto (user mosq) cannot write in {tmp_path / 'data'}: ")
    assert len(found) == 2
