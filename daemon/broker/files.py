"""Writing the broker's files: atomically, and only when their content or mode changes.

A file whose bytes are already right is not touched (its mtime stays), so running the
command again with the same configuration changes nothing. The passwords live one per
file in `credentials/` (0600, the folder 0700): written once, kept on later runs, removed
with their user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleet.config.collector import USER_RE

MIN_PASSWORD_CHARS = 12
_TOKEN_BYTES = 32  # 43 URL-safe characters: no ':' or white space for any client to trip on


class CredentialError(Exception):
    """A credential file that cannot be used; the message names the file, never its content."""


@dataclass(frozen=True, slots=True)
class Ownership:
    """Mode and group of a generated file; group None leaves the group as it comes."""

    mode: int
    gid: int | None = None


def _fix(path: Path, owner: Ownership) -> bool:
    """Set mode and group where they differ; True if anything changed."""
    info = path.stat()
    changed = False
    if stat.S_IMODE(info.st_mode) != owner.mode:
        path.chmod(owner.mode)
        changed = True
    if owner.gid is not None and info.st_gid != owner.gid:
        os.chown(path, -1, owner.gid)
        changed = True
    return changed


def ensure_dir(path: Path, owner: Ownership) -> bool:
    """Create the folder (parents as needed) with its mode and group; True if anything changed."""
    created = not path.is_dir()
    path.mkdir(parents=True, exist_ok=True, mode=owner.mode)
    return _fix(path, owner) or created


def write_if_changed(path: Path, data: bytes, owner: Ownership) -> bool:
    """Replace `path` by `data` at once (a crash leaves the old or the new file), unless it
    already holds exactly that; mode and group are set either way. True if written."""
    try:
        if path.read_bytes() == data:
            _fix(path, owner)
            return False
    except FileNotFoundError:
        pass
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            # Mode and group before the content: a secret is never readable by others.
            os.fchmod(file.fileno(), owner.mode)
            if owner.gid is not None:
                os.fchown(file.fileno(), -1, owner.gid)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Credentials:
    """`credentials/<user>`: each user's password, made once and kept."""

    FILE = Ownership(0o600)
    FOLDER = Ownership(0o700)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, user: str) -> Path:
        return self.folder / user

    def password(self, user: str) -> tuple[str, bool]:
        """The user's password and whether it was made now. A person may write their own
        (one line, at least MIN_PASSWORD_CHARS characters): it is used as it is."""
        path = self.path(user)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            password = secrets.token_urlsafe(_TOKEN_BYTES)
            write_if_changed(path, password.encode(), self.FILE)
            return password, True
        except UnicodeDecodeError:
            raise CredentialError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise CredentialError(f"cannot read {path}: {exc.strerror}") from None
        password = text.rstrip("\r\n")
        if "\n" in password or "\r" in password or "\x00" in password:
            raise CredentialError(f"{path}: a password is one line of text")
        if len(password) < MIN_PASSWORD_CHARS:
            raise CredentialError(
                f"{path}: shorter than {MIN_PASSWORD_CHARS} characters; write a longer "
                "one, or delete the file for a new random one"
            )
        _fix(path, self.FILE)
        return password, False

    def remove_others(self, keep: set[str]) -> list[str]:
        """Delete the credentials of users no longer configured; their names, sorted.

        A password nobody may use any more is only a secret lying about; a user added
        again later gets a new one.
        """
        removed: list[str] = []
        for entry in sorted(self.folder.iterdir()):
            if entry.name in keep or not USER_RE.fullmatch(entry.name):
                continue
            if entry.is_file() and not entry.is_symlink():
                entry.unlink()
                removed.append(entry.name)
        if removed:
            _fsync_dir(self.folder)
        return removed
