"""`fleet status` against a real HTTP server: the board's table, --json, --site, logins, errors,
and colour only on a real terminal (a PTY) without NO_COLOR.

The server is the standard library's, answering with device items made by the board's own
`verdict_json`, so the command reads exactly what the collector's API writes."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleet.daemon import cli
from fleet.daemon.board.model import Assignment, Readiness, Verdict
from fleet.daemon.board.render import verdict_json

FLEET = str(Path(sys.executable).with_name("fleet"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW_MS = int(time.time() * 1000)
SITES = {"allingtown": "Allingtown", "westhaven": "West Haven downtown"}


def item(device: str, site: str, state: Readiness, **kw: Any) -> dict[str, object]:
    verdict = Verdict(device, site, "segway", kw.pop("name", None), state, kw.pop("reason"), **kw)
    return verdict_json(verdict, now_ms=NOW_MS, site_names=SITES)


# In the API's order (sort_key): ready first. The westhaven site is listed first on purpose.
ITEMS = [
    item("sw-09", "westhaven", Readiness.READY, reason="92 % - enough", charge_pct=92.0),
    item(
        "sw-01",
        "allingtown",
        Readiness.READY,
        name="Segway 1",
        reason="87 % - enough for an 8-hour shift",
        charge_pct=87.0,
        range_km=21.4,
        last_seen_ms=NOW_MS - 12_000,
    ),
    item(
        "sw-02",
        "allingtown",
        Readiness.CHARGING,
        reason="charging, ready at 06:10",
        charge_pct=45.0,
        charging=True,
        full_at_ms=NOW_MS + 3_600_000,
        last_seen_ms=NOW_MS - 5_000,
    ),
    item(
        "sw-04",
        "allingtown",
        Readiness.LOW,
        reason="9 % - below the 60 % a Segway needs",
        charge_pct=9.0,
        last_seen_ms=NOW_MS - 60_000,
    ),
    item(
        "hh-01",
        "allingtown",
        Readiness.IN_USE,
        reason="signed out to Officer Diaz",
        charge_pct=70.0,
        runtime_h=6.5,
        assignment=Assignment("hh-01", "Officer Diaz", NOW_MS - 7_200_000, NOW_MS - 60_000, "demo"),
        overdue=True,
    ),
    item(
        "sw-06",
        "allingtown",
        Readiness.OFFLINE,
        reason="last heard 23 min ago",
        last_seen_ms=NOW_MS - 23 * 60_000,
        stale=True,
    ),
]


@dataclass
class Api:
    """A real HTTP server answering GET /api/v1/devices; what it answers is settable."""

    status: int = 200
    body: bytes = field(default_factory=lambda: json.dumps(ITEMS).encode())
    login: tuple[str, str] | None = None  # ask for Basic auth with these credentials
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    port: int = 0


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            state.seen.append((self.path, auth))
            status, body = state.status, state.body
            if state.login is not None:
                user, password = state.login
                good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                if auth != good:
                    status, body = 401, b'{"error": "sign in to see the board"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def status(api: Api, *args: str) -> int:
    return cli.main(["status", "--url", f"http://127.0.0.1:{api.port}", *args])


def test_the_table_per_site_ready_first_in_words(api, capsys):
    assert status(api) == 0
    out = capsys.readouterr().out
    assert not ANSI.search(out)  # not a terminal: no colour
    allingtown, westhaven = out.split("\n\n")
    assert allingtown.startswith("Allingtown (allingtown)\n")
    assert westhaven.startswith("West Haven downtown (westhaven)\n")
    lines = allingtown.splitlines()
    assert lines[1].split()[:3] == ["DEVICE", "NAME", "STATE"]
    order = [line.split()[0] for line in lines[2:-1]]
    assert order == ["sw-01", "sw-02", "sw-04", "hh-01", "sw-06"]
    row = {line.split()[0]: line for line in lines[2:-1]}
    assert "Segway 1" in row["sw-01"]
    assert "Ready" in row["sw-01"]
    assert "87 %" in row["sw-01"]
    assert "21 km" in row["sw-01"]
    assert "12 s ago" in row["sw-01"]
    assert "45 % +" in row["sw-02"]
    assert "Charging" in row["sw-02"]
    full_at = time.strftime("%H:%M", time.localtime((NOW_MS + 3_600_000) / 1000))
    assert full_at in row["sw-02"]
    assert "Officer Diaz (overdue)" in row["hh-01"]
    assert "6.5 h" in row["hh-01"]
    assert "23 min ago (stale)" in row["sw-06"]
    assert "last heard 23 min ago" in row["sw-06"]
    assert lines[-1].strip() == "1 ready, 1 charging, 1 low, 1 in use, 1 offline"
    assert api.seen == [("/api/v1/devices", None)]  # no credentials unless asked


def test_a_state_the_api_lists_late_is_still_shown_after_ready(api, capsys):
    shuffled = list(reversed(ITEMS))
    api.body = json.dumps(shuffled).encode()
    assert status(api) == 0
    allingtown = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in allingtown[2:-1]] == [
        "sw-01",
        "sw-02",
        "sw-04",
        "hh-01",
        "sw-06",
    ]


def test_json_prints_the_api_answer_and_site_is_asked_of_the_api(api, capsys):
    assert status(api, "--json", "--site", "west haven") == 0
    assert json.loads(capsys.readouterr().out) == ITEMS
    assert api.seen[0][0] == "/api/v1/devices?site=west+haven"


def test_no_devices_says_so(api, capsys):
    api.body = b"[]"
    assert status(api) == 0
    assert "has not heard from any" in capsys.readouterr().out


def test_a_login_is_sent_only_when_asked(api, capsys, monkeypatch):
    api.login = ("sergeant", "s3cret pass")
    monkeypatch.setenv("FLEET_PASSWORD", "s3cret pass")
    assert status(api, "--user", "sergeant") == 0
    assert "Segway 1" in capsys.readouterr().out
    assert [auth is None for _, auth in api.seen] == [True, False]


def test_a_login_without_user_or_with_a_wrong_password_is_refused(api, capsys, monkeypatch):
    api.login = ("sergeant", "right")
    assert status(api) == 77
    err = capsys.readouterr().err
    assert "asks for a login" in err
    assert "--user" in err
    monkeypatch.setenv("FLEET_PASSWORD", "wrong")
    assert status(api, "--user", "sergeant") == 77
    err = capsys.readouterr().err
    assert "refused the login of 'sergeant'" in err
    assert "sign in to see the board" in err
    assert "wrong" not in err  # the password never appears


def test_no_password_and_no_terminal_says_how(api, capsys, monkeypatch):
    api.login = ("sergeant", "right")
    monkeypatch.delenv("FLEET_PASSWORD", raising=False)
    with open(os.devnull) as nothing:
        monkeypatch.setattr(sys, "stdin", nothing)
        assert status(api, "--user", "sergeant") == 77
    assert "set $FLEET_PASSWORD" in capsys.readouterr().err


def test_unreachable_collector_is_ex_unavailable(api, capsys):
    port = api.port
    api.port = 1  # nothing listens on port 1
    assert status(api) == 69
    err = capsys.readouterr().err
    assert "cannot reach the collector at http://127.0.0.1:1/api/v1/devices" in err
    assert "fleet collector" in err
    api.port = port


@pytest.mark.parametrize(
    ("code", "body", "exit_code", "text"),
    [
        (500, b'{"error": "internal error; see the collector\'s log"}', 69, "answered 500"),
        (503, b"<html>proxy</html>", 69, "<html>proxy</html>"),
        (404, b'{"error": "no route GET /api/v1/devices"}', 1, "without the board's API"),
        (400, b'{"error": "no site \\"x\\" here"}', 1, 'no site "x" here'),
        (200, b"<html>not json</html>", 69, "not JSON"),
        (200, b'{"devices": []}', 69, "not a list of devices"),
    ],
)
def test_errors_say_what_the_collector_answered(api, capsys, code, body, exit_code, text):
    api.status, api.body = code, body
    assert status(api) == exit_code
    assert text in capsys.readouterr().err


def test_a_bad_url_is_refused(capsys):
    assert cli.main(["status", "--url", "ftp://example.org"]) == 78
    assert "not an http:// or https:// URL" in capsys.readouterr().err


def test_the_url_comes_from_the_configuration(api, capsys, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text(f'[http]\nbind = "0.0.0.0:{api.port}"\n')
    assert cli.main(["status", "--config", str(config)]) == 0
    assert "Segway 1" in capsys.readouterr().out
    config.write_text("[http]\nbind = 12\n")
    assert cli.main(["status", "--config", str(config)]) == 78


def on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run `argv` with its stdout on a real pseudo-terminal; everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, "no output from the command in 30 s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the follower side is closed, the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(api):
    argv = [FLEET, "status", "--url", f"http://127.0.0.1:{api.port}"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    painted = on_a_terminal(argv, {**env, "COLUMNS": "200"})
    assert "\x1b[32;1mReady" in painted  # green, and the word
    assert "\x1b[33;1mLow" in painted  # amber
    assert "\x1b[90;1mOffline" in painted  # grey
    plain = ANSI.sub("", painted)
    assert "Segway 1" in plain
    assert "Officer Diaz (overdue)" in plain
    assert not ANSI.search(on_a_terminal(argv, {**env, "NO_COLOR": "1", "COLUMNS": "200"}))


def test_a_narrow_terminal_cuts_lines_instead_of_wrapping(api):
    argv = [FLEET, "status", "--url", f"http://127.0.0.1:{api.port}"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "60"}
    out = on_a_terminal(argv, env)
    assert max(len(line) for line in out.splitlines()) <= 60
    assert "…" in out
