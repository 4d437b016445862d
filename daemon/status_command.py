"""`fleet status`: the readiness board in a terminal, from the collector's JSON API.

    fleet status [--url URL] [--config FILE] [--site S] [--json] [--user U]

Asks `GET /api/v1/devices` of the collector at `--url`, or at the configuration's
`http.bind` (a wildcard bind is asked on the loopback address; https when the listener
has TLS). Credentials are sent only when the API asks for them (401): HTTP Basic with
`--user` and the password from `FLEET_PASSWORD`, else a prompt on the terminal.

A table per site, ready devices first; colour only on a terminal and never with NO_COLOR
(https://no-color.org), and the state is always written in words. `--json` prints the
API's answer as it came. Exit codes: 0 shown; 69 (EX_UNAVAILABLE) the collector could
not be reached or failed; 77 (EX_NOPERM) the login was refused; 78 (EX_CONFIG) a bad
configuration; 1 any other refusal, with the collector's reason.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

from fleet.daemon.cli_support import EX_CONFIG, load_config

EX_UNAVAILABLE: Final = 69
EX_NOPERM: Final = 77
PASSWORD_ENV: Final = "FLEET_PASSWORD"  # noqa: S105 - the variable's name
DEVICES_PATH: Final = "/api/v1/devices"

# The API names a colour per state (board/model.py COLOUR); these are its ANSI codes.
_ANSI: Final = {
    "green": "32",
    "blue": "34",
    "amber": "33",
    "purple": "35",
    "red": "31",
    "grey": "90",
}
_STATE_ORDER: Final = (
    "ready",
    "charging",
    "low",
    "in_use",
    "out_of_service",
    "offline",
    "unknown",
)
_COLUMNS: Final = (
    "DEVICE",
    "NAME",
    "STATE",
    "CHARGE",
    "RANGE",
    "FULL AT",
    "LAST SEEN",
    "WHO HAS IT",
    "REASON",
)


class StatusError(Exception):
    """What went wrong, for a person, with the exit code it means."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(subparsers: Any) -> None:
    """Register `status` on the `fleet` command's sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="the readiness board in the terminal (from the collector's API)",
        description="Show which devices are ready, charging, low, signed out, out of service "
        "or offline, per site, from a running collector's GET /api/v1/devices.",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="the collector's base URL (default: http.bind of the configuration)",
    )
    p.add_argument("--config", type=Path, metavar="PATH", help="TOML configuration file")
    p.add_argument("--site", metavar="SITE", help="only this site")
    p.add_argument("--json", action="store_true", help="print the API's JSON as it came")
    p.add_argument(
        "--user",
        metavar="NAME",
        help=f"log in as NAME when the API asks (password from ${PASSWORD_ENV} or a prompt)",
    )
    p.add_argument(
        "--cafile", type=Path, metavar="PATH", help="CA certificate(s) to trust for https"
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds to wait (default 10)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        base, cafile = args.url, args.cafile
        if base is None:
            found = _from_config(args.config)
            if found is None:
                return EX_CONFIG
            base, cafile = found[0], cafile or found[1]
        items = fetch_devices(
            base,
            site=args.site,
            user=args.user,
            cafile=cafile,
            timeout_s=args.timeout,
        )
    except StatusError as exc:
        sys.stderr.write(f"fleet status: {exc}\n")
        return exc.code
    if args.json:
        sys.stdout.write(json.dumps(items, indent=2, ensure_ascii=False) + "\n")
        return 0
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    write_board(sys.stdout, items, colour=colour, width=width)
    return 0


def _from_config(path: Path | None) -> tuple[str, Path | None] | None:
    """The collector's URL from `http.bind`, and its own certificate to trust (a station's
    certificate is often self-signed); None after printing what is wrong with the config."""
    settings = load_config(path)
    if settings is None:
        return None
    http = settings.http
    host = http.bind_host
    if host == "0.0.0.0":  # noqa: S104 - a wildcard bind is asked on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if http.tls_cert is not None else "http"
    return f"{scheme}://{host}:{http.bind_port}", http.tls_cert


def fetch_devices(
    base: str,
    *,
    site: str | None = None,
    user: str | None = None,
    cafile: Path | None = None,
    timeout_s: float = 10.0,
    password: str | None = None,
) -> list[dict[str, Any]]:
    """The API's device items; StatusError says why not."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StatusError(f"--url {base!r} is not an http:// or https:// URL", EX_CONFIG)
    url = base.rstrip("/") + DEVICES_PATH
    if site is not None:
        url += "?" + urllib.parse.urlencode({"site": site})
    context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
    status, body = _get(url, None, context, timeout_s)
    if status == 401:
        if user is None:
            raise StatusError(
                f"{base} asks for a login: run again with --user NAME "
                f"(password from ${PASSWORD_ENV} or a prompt)",
                EX_NOPERM,
            )
        secret = password if password is not None else _password(user)
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        status, body = _get(url, f"Basic {token}", context, timeout_s)
        if status == 401:
            raise StatusError(f"{base} refused the login of {user!r}: {_reason(body)}", EX_NOPERM)
    if status != 200:
        code = EX_UNAVAILABLE if status >= 500 else 1
        hint = " (a collector without the board's API?)" if status == 404 else ""
        raise StatusError(f"{url} answered {status}: {_reason(body)}{hint}", code)
    try:
        items = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise StatusError(
            f"{url} answered with something that is not JSON", EX_UNAVAILABLE
        ) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise StatusError(f"{url} answered JSON that is not a list of devices", EX_UNAVAILABLE)
    return items


def _password(user: str) -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise StatusError(
            f"the collector asks for {user!r}'s password: set ${PASSWORD_ENV} "
            "(no terminal to prompt on)",
            EX_NOPERM,
        )
    return getpass.getpass(f"password for {user}: ")


def _get(
    url: str, authorization: str | None, context: ssl.SSLContext | None, timeout_s: float
) -> tuple[int, bytes]:
    # The scheme was checked in fetch_devices: http or https only.
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise StatusError(
            f"cannot reach the collector at {url}: {why}. Is `fleet collector` running? "
            "(--url or --config to ask another)",
            EX_UNAVAILABLE,
        ) from None


def _reason(body: bytes) -> str:
    """The API's {"error": ...}, or the start of whatever else came back."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return body[:200].decode("utf-8", "replace").strip() or "(empty answer)"
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, str):
        return error
    return json.dumps(value)[:200]


# --- the table -------------------------------------------------------------------------------


def _charge(item: Mapping[str, Any]) -> str:
    pct = item.get("charge_pct")
    if not isinstance(pct, int | float):
        return "-"
    return f"{pct:.0f} %" + (" +" if item.get("charging") else "")


def _range(item: Mapping[str, Any]) -> str:
    km, hours = item.get("range_km"), item.get("runtime_h")
    if isinstance(km, int | float):
        return f"{km:.0f} km"
    if isinstance(hours, int | float):
        return f"{hours:.1f} h"
    return "-"


def _clock(iso: object, now: float) -> str:
    """A coming time as the local clock (with the weekday when it is not today)."""
    if not isinstance(iso, str):
        return "-"
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return "?"
    today = datetime.fromtimestamp(now).astimezone().date()
    return when.strftime("%H:%M") if when.date() == today else when.strftime("%a %H:%M")


def _ago(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def _row(item: Mapping[str, Any], now: float) -> list[str]:
    seen = _ago(item.get("last_seen_age_s")) + (" (stale)" if item.get("stale") else "")
    who = item.get("signed_out_to") or "-"
    if item.get("signed_out_to") and item.get("overdue"):
        who += " (overdue)"
    return [
        str(item.get("device", "?")),
        str(item.get("name") or item.get("device", "?")),
        str(item.get("label") or item.get("state", "?")),
        _charge(item),
        _range(item),
        _clock(item.get("full_at"), now),
        seen,
        str(who),
        str(item.get("reason") or ""),
    ]


def _state_rank(item: Mapping[str, Any]) -> int:
    state = item.get("state")
    return _STATE_ORDER.index(state) if state in _STATE_ORDER else len(_STATE_ORDER)


def write_board(
    out: TextIO,
    items: Sequence[Mapping[str, Any]],
    *,
    colour: bool,
    width: int | None = None,
    now: float | None = None,
) -> None:
    """One table per site (by its name), ready devices first, then a count per state."""
    now = time.time() if now is None else now
    if not items:
        out.write("No devices: the collector has not heard from any yet.\n")
        return
    sites: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        sites.setdefault(str(item.get("site", "?")), []).append(item)
    for n, (site, members) in enumerate(sorted(sites.items())):
        members = sorted(members, key=_state_rank)  # stable: keeps the API's order within
        name = str(members[0].get("site_name") or site)
        if n:
            out.write("\n")
        out.write(f"{name} ({site})\n" if name != site else f"{site}\n")
        rows = [list(_COLUMNS)] + [_row(item, now) for item in members]
        widths = [max(len(r[c]) for r in rows) for c in range(len(_COLUMNS))]
        for i, row in enumerate(rows):
            cells = [cell.ljust(widths[c]) for c, cell in enumerate(row[:-1])]
            line = "  ".join([*cells, row[-1]])
            if width is not None and len(line) > width:
                line = line[: max(width - 1, 0)] + "…"
            if colour and i > 0:
                line = _paint(line, cells, widths, members[i - 1])
            out.write(line.rstrip() + "\n")
        counts: dict[str, int] = {}
        for item in members:
            label = str(item.get("label") or item.get("state", "?")).lower()
            counts[label] = counts.get(label, 0) + 1
        out.write("  " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "\n")


def _paint(line: str, cells: list[str], widths: list[int], item: Mapping[str, Any]) -> str:
    """Colour the STATE cell (the third) of an already laid-out line: widths stay right."""
    code = _ANSI.get(str(item.get("colour")))
    if code is None:
        return line
    start = len(cells[0]) + len(cells[1]) + 4
    end = start + widths[2]
    if len(line) < end:
        return line
    return f"{line[:start]}\x1b[{code};1m{line[start:end]}\x1b[0m{line[end:]}"
