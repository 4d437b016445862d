"""What the collector process imports (issue 14, memory): apprise (~16 MB resident, ~0.2 s to
import) only when a notification route has URLs, and none of the other sub-commands' modules
(the agent's, the simulator's, the broker tools', tomlkit for `fleet user`: ~1.9 MB)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fleet.daemon import cli
from tests.harness.paths import REPO

# A fresh interpreter each time: this test run's own sys.modules has apprise from other tests.
# The way `fleet collector` starts (cli.main -> the collector's run), up to a built collector.
_PROBE = """
import json, sys
from pathlib import Path
from fleet.config import load_settings
from fleet.daemon import cli

cli.build_parser("collector").parse_args(["collector", "--config", sys.argv[1]])
from fleet.daemon.collector.app import Collector

collector = Collector(load_settings(Path(sys.argv[1]), environ={}))
assert collector.alerts is not None
print(json.dumps({
    "apprise": "apprise" in sys.modules,
    "routes": collector.alerts.notifier.routes(),
    "others": sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[2:]))),
}))
"""
# What only the other sub-commands need.
_OTHERS = (
    "tomlkit",
    "fleet.daemon.agent",
    "fleet.daemon.simulate",
    "fleet.daemon.broker",
    "fleet.daemon.user_command",
    "fleet.daemon.status_command",
    "fleet.daemon.cmd_check_config",
    "fleet.daemon.collector.deadletter_command",
    "asyncio",  # the agent's event loop (config/without_asyncio.py: ~2 MB)
)


def _probe(tmp_path: Path, notify: str) -> dict[str, object]:
    # Nothing listens on port 9: the collector is built, never started.
    config = tmp_path / "fleet.toml"
    config.write_text(
        f"""
[site]
id = "allingtown"
name = "Allingtown"

[mqtt]
host = "127.0.0.1"
port = 9

[influx]
url = "http://127.0.0.1:9"
database = "fleet"

[spool]
path = "{tmp_path / "spool.sqlite"}"

[http]
bind = "127.0.0.1:0"

[alerts]
state_path = "{tmp_path / "alerts.sqlite"}"

[alerts.notify]
{notify}
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config), *_OTHERS],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def test_a_collector_without_notification_urls_does_not_import_apprise(tmp_path: Path) -> None:
    result = _probe(tmp_path, "")
    assert result == {
        "apprise": False,
        "routes": {"warning": [], "critical": [], "escalation": []},
        "others": [],
    }


def test_a_route_with_a_url_loads_apprise_and_keeps_its_url(tmp_path: Path) -> None:
    result = _probe(tmp_path, 'critical = ["json://127.0.0.1:9/alerts"]')
    assert result["apprise"] is True
    routes = result["routes"]
    assert isinstance(routes, dict)
    assert routes["warning"] == []
    assert routes["escalation"] == []
    assert len(routes["critical"]) == 1  # its label: the URL redacted (a secret)


def test_each_sub_command_alone_and_all_of_them_for_help() -> None:
    # Every module registers the name COMMANDS gives it (else `fleet NAME` would fail), and
    # with no name or an unknown one the parser has every sub-command, in the table's order.
    def names(parser: argparse.ArgumentParser) -> list[str]:
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(sub.choices)

    for name in cli.COMMANDS:
        assert names(cli.build_parser(name)) == [name]
    assert names(cli.build_parser()) == list(cli.COMMANDS)
    assert names(cli.build_parser("no-such-command")) == list(cli.COMMANDS)
