"""`fleet user add|remove|list` as a real process on a real TOML file, and the collector's
listener, built from that file, letting the new user in."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.daemon.collector.http import HttpApi, Response, Router
from tests.daemon.collector.http.rig import Api

pytestmark = pytest.mark.integration  # real processes and a real HTTP server

FLEET = str(Path(sys.executable).with_name("fleet"))
CONFIG = """# West Haven sub-station
[site]
id = "allingtown"  # the site's id

[http]
# the board
bind = "127.0.0.1:0"
"""


def fleet_user(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEET, "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "FLEET_CONFIG": ""},
    )


def test_user_add_writes_a_hash_the_collector_accepts(tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text(CONFIG + f'\n[spool]\npath = "{tmp_path / "spool.sqlite"}"\n')
    config.chmod(0o640)
    password = "Segway-2026-night"
    added = fleet_user("add", "sgt.reyes", "--config", str(config), "--password-stdin",
                       stdin=password + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added user 'sgt.reyes'" in added.stdout
    text = config.read_text()
    for shown in (added.stdout, added.stderr):
        assert password not in shown
        assert "scrypt$" not in shown
    assert password not in text
    assert text.startswith(CONFIG)  # comments and layout kept
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert fleet_user("add", "ortiz", "--config", str(config), "--password-stdin",
                      stdin="Another-long-one\n").returncode == 0  # fmt: skip
    assert fleet_user("list", "--config", str(config)).stdout == "ortiz\nsgt.reyes\n"

    settings = load_settings(config, environ={})
    router = Router()
    router.post("/api/v1/x", lambda request: Response.json(201, {"user": request.user}))
    key_file = settings.http.session_key_file(settings.spool.path)
    server = HttpApi.from_settings(settings.http, router, session_key_file=key_file)
    stop = server.start()
    try:
        api = Api(server, settings.http)
        assert key_file == tmp_path / "spool.session-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        cookie, csrf = api.login("sgt.reyes", password)
        answer = api.call("POST", "/api/v1/x", {}, headers={"Cookie": cookie, "X-CSRF-Token": csrf})
        assert answer[:3:2] == (201, {"user": "sgt.reyes"})
        assert api.call("POST", "/api/v1/x", {}, basic=("ortiz", "Another-long-one"))[0] == 201
    finally:
        stop()

    removed = fleet_user("remove", "ortiz", "--config", str(config))
    assert removed.returncode == 0, removed.stderr
    assert fleet_user("list", "--config", str(config)).stdout == "sgt.reyes\n"
    assert list(load_settings(config, environ={}).http.users) == ["sgt.reyes"]


@pytest.mark.parametrize(
    ("args", "stdin", "code", "error"),
    [
        (["add", "reyes"], "short\n", 1, "shorter than 10 characters"),
        (["add", "bad name"], "long enough pw\n", 1, "user names are 1-64"),
        (["add", "-x"], "long enough pw\n", 2, ""),  # argparse: not a name
        (["remove", "nobody"], "", 1, "no user 'nobody'"),
    ],
)
def test_user_refuses_with_a_reason_and_changes_nothing(tmp_path, args, stdin, code, error):
    config = tmp_path / "fleet.toml"
    config.write_text(CONFIG)
    extra = ["--password-stdin"] if args[0] == "add" else []
    result = fleet_user(*args, "--config", str(config), *extra, stdin=stdin)
    assert result.returncode == code
    assert error in result.stderr
    assert config.read_text() == CONFIG


def test_user_needs_a_readable_toml_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[http\n")
    result = fleet_user("list", "--config", str(broken))
    assert (result.returncode, "is not valid TOML" in result.stderr) == (78, True)
    missing = fleet_user("list", "--config", str(tmp_path / "none.toml"))
    assert (missing.returncode, "cannot read" in missing.stderr) == (78, True)
