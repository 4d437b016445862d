"""Which settings are secrets, how their files read, and how they are named as credentials.

A secret `key.path` can come from the TOML file or a `FLEET_` variable like any
setting, from the file named by its sibling `<key>_file`, or from the systemd
credential named after its key path (`mqtt.password`, `alerts.notify.warning`);
`config.sources` applies the precedence. Notification routes are lists: their
files hold one URL per line. A driver's secret (a BTHome `bind_key`) lives in an
entry of the `agent.drivers` list, whose index is no stable name: its credential
is named after the driver's device, `agent.drivers.<device>.bind_key`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fleet.config.agent import driver_secret_fields
from fleet.config.base import Loc
from fleet.drivers.contract import ID_PATTERN

_ID_RE = re.compile(ID_PATTERN)

DRIVERS_LOC: tuple[str, str] = ("agent", "drivers")


@dataclass(frozen=True)
class SecretKey:
    """A secret setting at a fixed key path."""

    loc: tuple[str, ...]
    lines: bool = False
    """A list of values, one per line in its file or credential (notification URLs)."""

    @property
    def name(self) -> str:
        """The systemd credential's name: the key path, `alerts.notify.warning`."""
        return ".".join(self.loc)

    @property
    def file_loc(self) -> tuple[str, ...]:
        """The key naming the file that holds it: `alerts.notify.warning_file`."""
        return (*self.loc[:-1], f"{self.loc[-1]}_file")


SECRET_KEYS: tuple[SecretKey, ...] = (
    SecretKey(("mqtt", "password")),
    SecretKey(("influx", "token")),
    SecretKey(("influx", "password")),
    SecretKey(("alerts", "notify", "warning"), lines=True),
    SecretKey(("alerts", "notify", "critical"), lines=True),
    SecretKey(("alerts", "notify", "escalation"), lines=True),
)
"""Secrets at fixed key paths that a credential or a `<key>_file` can supply."""


def driver_credential(device: Any, field: str) -> str | None:
    """The credential name of a driver's secret, `agent.drivers.hh-02.bind_key`.

    None when `device` is no valid id: the name must never reach outside the
    credentials directory (`../x`), and validation reports the bad id anyway.
    """
    if not isinstance(device, str) or not _ID_RE.fullmatch(device):
        return None
    return f"{'.'.join(DRIVERS_LOC)}.{device}.{field}"


def driver_secret_locs(drivers: Any) -> Iterator[tuple[Loc, Any]]:
    """`(loc of the secret, its driver's device)` for each secret field of each driver table."""
    if not isinstance(drivers, list):
        return
    for index, entry in enumerate(drivers):
        if isinstance(entry, dict):
            for field in driver_secret_fields(entry.get("kind")):
                yield (*DRIVERS_LOC, index, field), entry.get("device")


def fill_drivers(
    drivers: Any,
    inline_wins: bool,
    credential: Callable[[str, Loc], str | list[str] | None],
    secret_file: Callable[[Loc, Any, Loc], str | list[str] | None],
) -> list[Any] | None:
    """`drivers` (the agent.drivers tables) with each secret from its credential or file.

    Lists are replaced whole when sources merge, so the secrets go into a copy
    of the list that wins: the environment's (whose own values win,
    `inline_wins`) or the TOML file's (whose values lose to a credential or a
    file). `credential(name, loc)` and `secret_file(file key loc, its value,
    loc)` read them, recording where they came from. None when nothing was
    filled in.
    """
    if not isinstance(drivers, list):
        return None
    filled = list(drivers)
    for loc, device in driver_secret_locs(drivers):
        index, field = int(loc[2]), str(loc[3])
        if inline_wins and field in filled[index]:
            continue
        name = driver_credential(device, field)
        value = credential(name, loc) if name else None
        if value is None:
            named = filled[index].get(f"{field}_file")
            value = secret_file((*loc[:3], f"{field}_file"), named, loc)
        if value is not None:
            filled[index] = {**filled[index], field: value}
    return filled if filled != drivers else None


def read_secret(path: Path, *, lines: bool) -> str | list[str]:
    """A secret file's content; OSError or ValueError (with the reason) if unusable.

    A text secret loses its trailing newline. A list holds one value per line;
    blank lines and lines starting with '#' are left out.
    """
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError("is empty")
    if not lines:
        return text.rstrip("\r\n")
    values = [s for s in (line.strip() for line in text.splitlines()) if s and s[0] != "#"]
    if not values:
        raise ValueError("has no URL, only comments and blank lines")
    return values


def secret_problem(path: Path, exc: Exception) -> str:
    """Why a secret file cannot be used, naming the file but never its content."""
    if isinstance(exc, OSError):
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path} is not UTF-8 text"
    return f"{path} {exc}"


def secret_strings(value: Any) -> Iterator[str]:
    """Every string a secret value shows: itself, each list item, a URL's password."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, list):
        for item in value:
            yield from secret_strings(item)
        return
    if not isinstance(value, str):
        return
    yield value
    try:
        password = urlsplit(value).password if "://" in value else None
    except ValueError:
        password = None
    if password:
        yield password
        yield unquote(password)


def walk(data: Any, loc: Loc) -> tuple[bool, Any]:
    """Whether nested dicts/lists `data` hold a value at `loc`, and that value."""
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return False, None
        data = data[part]
    return True, data


def secret_locs(data: dict[str, Any]) -> list[Loc]:
    """Key paths of the secrets written out in `data` (a parsed TOML file), not via files."""
    locs: list[Loc] = [key.loc for key in SECRET_KEYS]
    locs += [loc for loc, _ in driver_secret_locs(walk(data, DRIVERS_LOC)[1])]
    return [loc for loc in locs if walk(data, loc)[1] not in (None, "", [])]
